"""Readers that wait (`wait`, `kill`, `tail -f`) follow the journal instead of replaying it."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import msgspec
import pytest

from corral.core.records import Attached, Opened, Request, Transition, encode
from corral.core.states import ENSEMBLE
from corral.journal import JournalWriter, encode_frame
from corral.journal.frame import HEADER
from corral.spec.model import Ensemble, JobTemplate


def _cpu_and_reads(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and bytes read (rchar) of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/io") as f:
        rchar = int(next(line for line in f if line.startswith("rchar:")).split()[1])
    return cpu, rchar


def _big_journal(root: Path, task_id: str, records: int) -> Path:
    """An ensemble of 2 jobs, job 0 ACTIVE, then `records` records that change little (the cost
    measured below is the waiting, not the fold). Written in one go: no fsync per record."""
    ens = Ensemble(name="big", job=JobTemplate(argv=("true",)), params={"x": [1, 2]})
    d = root / task_id
    d.mkdir(parents=True)
    head = [
        Opened("ensemble", task_id, msgspec.to_builtins(ens), 1.0, "host", "boot"),
        Attached(os.getpid(), 1, 1.0, "host", "boot"),
        Transition(ENSEMBLE, "ACTIVE", 1.0),
        Transition(0, "ACTIVE", 1.0),
    ]
    frames = [encode_frame(encode(r)) for r in head]
    frame = encode_frame(encode(Request("resume", 2.0)))
    path = d / "journal"
    with open(path, "wb") as f:
        f.write(HEADER + b"".join(frames))
        for _ in range(records // 10_000):
            f.write(frame * 10_000)
    return path


@pytest.mark.slow
def test_wait_on_a_million_record_journal_uses_bounded_cpu_while_waiting(corral):
    path = _big_journal(corral.root, "big", 1_000_000)
    lock = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)  # a live supervisor, as far as readers can tell
    waiter = corral.start("wait", "0", "--ensemble", "big")
    try:
        # the first read folds all of it; wait until that is over (CPU time stops growing)
        deadline = time.time() + 300
        before = _cpu_and_reads(waiter.pid)
        while True:
            time.sleep(1.0)  # a sampling period, not a synchronisation
            now = _cpu_and_reads(waiter.pid)
            if now[0] - before[0] < 0.05 or time.time() > deadline:
                break
            before = now
        assert waiter.poll() is None, waiter.communicate()
        start = _cpu_and_reads(waiter.pid)
        time.sleep(3.0)  # the measured window
        end = _cpu_and_reads(waiter.pid)
        cpu, read = end[0] - start[0], end[1] - start[1]
        # replaying 1M records (~28 MB) every 0.2 s, as before, costs the whole window in CPU
        assert cpu < 0.3, f"{cpu:.2f} s CPU in 3 s of waiting"
        assert read < 1_000_000, f"{read} bytes read in 3 s of waiting"
        os.close(lock)
        with JournalWriter.open(path, create=False) as w:
            w.append(encode(Transition(0, "SUCCESS", 3.0)))
            w.commit()
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, err
        assert out.split() == ["0", "SUCCESS"]
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()


def test_wait_returns_when_the_jobs_end(corral, spec_file):
    spec = spec_file(
        "name: two\njob: {cmd: 'sleep 1; exit {{params.code}}'}\nparams: {code: [0, 3]}\nretries: 0\n"
    )
    run = corral.start("run", str(spec), "--id", "two", "-q")
    corral.wait_for(lambda: (corral.root / "two" / "journal").exists())
    result = corral("wait", "0", "1", "--ensemble", "two", timeout=60)
    assert result.returncode == 1, result.stderr
    assert result.stdout.split() == ["0", "SUCCESS", "1", "FAILED"]
    run.communicate(timeout=60)


def test_tail_follow_prints_output_as_it_comes_and_stops_with_the_run(corral, spec_file):
    spec = spec_file(
        "name: talk\nprocesses:\n  - {name: p, cmd: 'for i in 1 2 3; do echo line$i; sleep 0.4; done'}\n"
    )
    run = corral.start("run", str(spec), "--id", "talk", "-q")
    corral.wait_for(lambda: (corral.root / "talk" / "logs" / "p.0.stdout").exists())
    result = corral("tail", "talk", "p", "-f", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["line1", "line2", "line3"]
    run.communicate(timeout=60)


def _without(corral, names: tuple[str, ...], task_id: str, *args: str) -> str:
    """The output of `status` without some of what supervisors leave for readers."""
    d = corral.root / task_id
    moved = []
    for name in names:
        if (d / name).exists():
            (d / name).rename(d / f"{name}.aside")
            moved.append(name)
    try:
        result = corral("status", task_id, *args, "--json", check=True)
    finally:
        for name in moved:
            (d / f"{name}.aside").rename(d / name)
    return result.stdout


def test_status_from_the_checkpoint_and_status_json_equals_a_replay(corral, spec_file):
    ens = spec_file(
        "name: e\njob: {cmd: 'test {{params.i}} -ne 0 && test {{params.i}} -ne 4'}\nparams: {i: {range: [0, 12]}}\n"
        "retries: 1\njob_limit: 3\n",
        "ens.yaml",
    )
    task = spec_file(
        "name: t\nprocesses:\n  - {name: a, cmd: 'exit 0'}\n  - {name: b, cmd: 'exit 3', after: [a], max_failures: 2}\n"
        "  - {name: fin, cmd: 'true', final: true}\n",
        "task.yaml",
    )
    assert corral("run", str(ens), "--id", "e1", "-q").returncode == 1
    assert corral("run", str(task), "--id", "t1", "-q").returncode == 1
    everything = ("checkpoint", "status.json")
    assert (corral.root / "e1" / "checkpoint").exists() and (corral.root / "t1" / "checkpoint").exists()
    from corral.journal import read_journal
    from corral.supervisor import checkpoints
    from corral.supervisor.layout import Layout

    for name in ("e1", "t1"):  # the supervisor's last checkpoint counts every frame before it
        loaded = checkpoints.load(Layout(corral.root, name))
        assert loaded is not None
        assert loaded.checkpoint.records == len(read_journal(corral.root / name / "journal").payloads)
    # a task: from status.json (written when it ended), then from its checkpoint, then replayed
    replayed = _without(corral, everything, "t1")
    assert corral("status", "t1", "--json", check=True).stdout == replayed
    assert _without(corral, ("status.json",), "t1") == replayed
    # an ensemble's job table: from its checkpoint, and replayed
    for args in [(), ("--jobs",), ("--jobs", "--state", "failed")]:
        assert _without(corral, ("status.json",), "e1", *args) == _without(corral, everything, "e1", *args)


def test_recover_from_a_checkpoint_runs_every_job_exactly_once(corral, spec_file, tmp_path):
    from corral.supervisor import checkpoints
    from corral.supervisor.layout import Layout
    from corral.supervisor.session import replay

    ledger = tmp_path / "ledger"
    spec = spec_file(
        f"name: e\njob: {{cmd: 'echo {{{{params.i}}}} >> {ledger}; sleep 0.3'}}\n"
        "params: {i: {range: [0, 16]}}\njob_limit: 3\n"
    )
    run = corral.start("run", str(spec), "--id", "e1", "-q")
    journal = corral.root / "e1" / "journal"
    corral.wait_for(lambda: journal.exists() and corral.status("e1")["jobs"]["succeeded"] >= 5)
    run.kill()  # SIGKILL: the supervisor dies mid-way, its reaper and jobs go on
    run.communicate()
    # the checkpoint a supervisor writes now and then, as of what is committed
    layout = Layout(corral.root, "e1")
    sup, _ = replay(layout)
    checkpoints.write(layout, sup, os.path.getsize(layout.journal), 0, time.time())
    result = corral("recover", "e1", "-q", timeout=120)
    assert result.returncode == 0, result.stderr
    view = corral.status("e1")
    assert view["state"] == "SUCCESS" and view["jobs"]["succeeded"] == 16
    lines = ledger.read_text().split()
    assert sorted(map(int, lines)) == list(range(16)), lines  # every job once, none twice
