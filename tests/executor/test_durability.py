"""Calls outlive their driver: a SIGKILLed driver, a rerun, and re-queueing on shutdown."""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import executor_calls as calls
import pytest

import corral
from corral.core.records import Note, RunUpdate, Transition, decode
from corral.journal import lock_holder, read_journal

DRIVER = str(Path(__file__).parent / "driver_script.py")


def start_driver(
    root: Path, ident: str, log: Path, gate: Path, n: int, first: int, workers: int | None = None
) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop("CORRAL_TASK_ID", None)
    return subprocess.Popen(
        [
            sys.executable,
            DRIVER,
            str(root),
            ident,
            str(log),
            str(gate),
            str(n),
            str(first),
            str(workers or n),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_line(proc: subprocess.Popen[str], wanted: str) -> list[str]:
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line.strip())
        if line.strip() == wanted:
            return seen
    raise AssertionError(
        f"the driver ended before {wanted!r}: {seen} {proc.stderr.read() if proc.stderr else ''}"
    )


@pytest.mark.parametrize("supervisor_too", [False, True], ids=["driver", "driver-and-supervisor"])
def test_a_killed_driver_leaves_calls_running_and_a_rerun_gets_each_once(
    root: Path, tmp_path: Path, supervisor_too: bool
) -> None:
    log, gate = tmp_path / "starts", tmp_path / "gate"
    first = start_driver(root, "durable", log, gate, 8, 4)
    wait_line(first, "finished")  # calls 0-3 done; 4-7 running, held by the gate
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    if supervisor_too:  # the new driver recovers it: re-attaches to the calls still running
        holder = lock_holder(root / "durable" / "journal")
        assert holder is not None
        os.kill(holder, signal.SIGKILL)
    second = start_driver(root, "durable", log, gate, 8, 4)
    wait_line(second, "finished")  # stored results: 0-3 not run again
    gate.touch()  # the calls the first driver started may finish now
    lines = wait_line(second, "done")
    assert second.wait(timeout=60) == 0
    results = {int(p[1]): int(p[2]) for p in (line.split() for line in lines) if p[0] == "result"}
    assert results == {i: i * i for i in range(8)}
    assert Counter(log.read_text().split()) == {str(i): 1 for i in range(8)}  # each ran once
    if supervisor_too:
        recs = [decode(p) for p in read_journal(root / "durable" / "journal").payloads]
        assert any(isinstance(r, Note) and "recovered: 4 re-attached" in r.text for r in recs)


def _queued(ledger: Path) -> set[str]:
    """Jobs the call zygote holds handed over and not started (Q lines without an S)."""
    lines = [line.split("\t") for line in ledger.read_text().splitlines()] if ledger.exists() else []
    return {f[1] for f in lines if f[0] == "Q"} - {f[1] for f in lines if f[0] == "S"}


def test_a_killed_supervisor_starts_the_zygotes_queue_and_each_call_runs_once(
    root: Path, tmp_path: Path
) -> None:
    """2 workers, 6 calls held by a gate: 2 run, 2 wait in the zygote's queue (handed over,
    journaled LAUNCHING), 2 are pending. Driver and supervisor SIGKILLed: the zygote starts its
    queue (nobody is left to hand it more), a new driver recovers, every call runs once."""
    log, gate = tmp_path / "starts", tmp_path / "gate"
    first = start_driver(root, "queued", log, gate, 6, 0, workers=2)
    wait_line(first, "finished")
    deadline = time.monotonic() + 120
    ledger = root / "queued" / "reaper.log"
    while not (log.exists() and len(log.read_text().split()) == 2 and len(_queued(ledger)) == 2):
        assert time.monotonic() < deadline, (log.exists() and log.read_text(), _queued(ledger))
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    holder = lock_holder(root / "queued" / "journal")
    assert holder is not None
    os.kill(holder, signal.SIGKILL)
    second = start_driver(root, "queued", log, gate, 6, 0, workers=2)
    wait_line(second, "finished")
    gate.touch()
    lines = wait_line(second, "done")
    assert second.wait(timeout=60) == 0
    results = {int(p[1]): int(p[2]) for p in (line.split() for line in lines) if p[0] == "result"}
    assert results == {i: i * i for i in range(6)}
    assert Counter(log.read_text().split()) == {str(i): 1 for i in range(6)}  # each ran once
    recs = [decode(p) for p in read_journal(root / "queued" / "journal").payloads]
    assert any(isinstance(r, Note) and "recovered: 4 re-attached" in r.text for r in recs)
    assert not any(isinstance(r, RunUpdate) and r.state in ("LOST", "FAILED") for r in recs)


def test_shutdown_with_cancel_futures_requeues(root: Path, tmp_path: Path) -> None:
    log, gate = tmp_path / "starts", tmp_path / "gate"
    ex = corral.Executor(id="requeue", root=root, max_workers=2)
    running = [ex.submit(calls.counted, str(log), i, str(gate)) for i in range(2)]
    queued = [ex.submit(calls.counted, str(log), i, str(gate)) for i in range(2, 4)]
    deadline = __import__("time").monotonic() + 60
    while not (log.exists() and len(log.read_text().split()) == 2):  # both started
        assert __import__("time").monotonic() < deadline
        cf.wait(running, timeout=0.05)
    ex.shutdown(cancel_futures=True)
    for f in running + queued:
        with pytest.raises(cf.CancelledError):
            f.result(timeout=30)
    recs = [decode(p) for p in read_journal(root / "requeue" / "journal").payloads]
    notes = [r.text for r in recs if isinstance(r, Note) and "re-queued" in r.text]
    # the running two, and the calls handed to the zygote's queue ahead of a free slot (never
    # started there: withdrawn); 2 and 3 may also have been only pending (nothing to re-queue)
    assert {n.split()[1] for n in notes} in ({"0", "1"}, {"0", "1", "2"}, {"0", "1", "2", "3"})
    ends = {r.job: r.state for r in recs if isinstance(r, Transition) and r.job in (0, 1, 2, 3)}
    assert set(ends.values()) <= {"KILLED", "CLEANING", "ACTIVE"} and "FAILED" not in ends.values()
    running = {r.job for r in recs if isinstance(r, RunUpdate) and r.state == "RUNNING"}
    assert running == {0, 1}  # the queued ones were withdrawn, not started and killed
    assert Counter(log.read_text().split()) == {"0": 1, "1": 1}
    gate.touch()
    with corral.Executor(id="requeue", root=root, max_workers=2) as again:
        futs = [again.submit(calls.counted, str(log), i, str(gate)) for i in range(4)]
        assert [f.result(timeout=120) for f in futs] == [0, 1, 4, 9]
    starts = Counter(log.read_text().split())
    assert starts == {"0": 2, "1": 2, "2": 1, "3": 1}  # the killed ones ran again, the rest once


def test_corral_lose_never_starts_a_call_held_in_the_zygotes_queue(root: Path, tmp_path: Path) -> None:
    log, gate = tmp_path / "starts", tmp_path / "gate"
    ex = corral.Executor(id="lost", root=root, max_workers=1)
    futs = [ex.submit(calls.counted, str(log), i, str(gate)) for i in range(3)]
    ledger = root / "lost" / "reaper.log"
    deadline = time.monotonic() + 120
    while not (log.exists() and log.read_text().split() == ["0"] and _queued(ledger) == {"1"}):
        assert time.monotonic() < deadline, (log.exists() and log.read_text(), _queued(ledger))
        time.sleep(0.05)
    env = {k: v for k, v in os.environ.items() if k != "CORRAL_TASK_ID"}
    lose = [sys.executable, "-m", "corral", "--root", str(root), "lose", "lost"]
    assert subprocess.run(lose, env=env, capture_output=True, timeout=120).returncode == 0
    gate.touch()
    while not any(line.startswith("X\t") for line in ledger.read_text().splitlines()):
        assert time.monotonic() < deadline  # the zygote let go: nothing left to start
        time.sleep(0.05)
    assert log.read_text().split() == ["0"]  # the held call was withdrawn, never started
    for f in futs[:2]:  # the running one and the held one: both ended, neither succeeded
        with pytest.raises(corral.CallFailed):
            f.result(timeout=60)
    ex.shutdown(wait=False)
