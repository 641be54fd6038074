"""corral.Executor through real processes: results, failures, dependencies, nesting."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import executor_calls as calls
import pytest

import corral
from corral.core.records import Request, RunUpdate, decode
from corral.journal import lock_holder, read_journal


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("CORRAL_TASK_ID", None)
    return subprocess.run(
        [sys.executable, "-m", "corral", "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def records(root: Path, ident: str) -> list:
    return [decode(p) for p in read_journal(root / ident / "journal").payloads]


def test_results_exceptions_and_map(root: Path) -> None:
    with corral.Executor(id="basic", root=root, max_workers=4) as ex:
        f = ex.submit(calls.square, 7)
        assert isinstance(f, cf.Future)
        assert f.result(timeout=60) == 49
        assert list(ex.map(calls.square, range(20), timeout=120)) == [i * i for i in range(20)]
        assert ex.submit(lambda x: x + 1, 41).result(timeout=60) == 42
        scale = 3
        assert ex.submit(lambda x: x * scale, 5).result(timeout=60) == 15  # a closure
        bad = ex.submit(calls.fail, "no good")
        with pytest.raises(ValueError, match="no good") as info:
            bad.result(timeout=60)
        assert isinstance(info.value.__cause__, corral.executor.RemoteTraceback)
        assert "in fail" in str(info.value.__cause__) and "no good" in str(info.value.__cause__)
        done, _ = cf.wait([ex.submit(calls.square, i) for i in range(30, 35)], timeout=60)
        assert sorted(d.result() for d in done) == [i * i for i in range(30, 35)]
        assert sorted(x.result() for x in cf.as_completed([ex.submit(calls.add, 1, 2)], timeout=60)) == [3]
    status = cli(root, "status", "basic", "--jobs", "--json")
    assert status.returncode in (0, 1), status.stderr
    assert "square" in status.stdout


def test_a_dying_call_fails_alone(root: Path) -> None:
    with corral.Executor(id="dying", root=root, max_workers=3) as ex:
        exits = ex.submit(calls.exit_with, 3)
        killed = ex.submit(calls.kill_self)
        fine = [ex.submit(calls.square, i) for i in range(6)]
        with pytest.raises(corral.CallFailed) as info:
            exits.result(timeout=60)
        assert info.value.exit_code == 3 and info.value.signal is None
        with pytest.raises(corral.CallFailed) as info:
            killed.result(timeout=60)
        assert info.value.signal == 9
        assert [f.result(timeout=60) for f in fine] == [i * i for i in range(6)]


def test_chain_of_100_and_a_diamond(root: Path) -> None:
    with corral.Executor(id="chain", root=root, max_workers=4) as ex:
        f = ex.submit(calls.add, 0)
        for _ in range(100):
            f = ex.submit(calls.add, f, 1)
        assert f.result(timeout=300) == 100
        top = ex.submit(calls.square, 3)
        left, right = ex.submit(calls.add, top, 1), ex.submit(calls.add, top, 2)
        bottom = ex.submit(calls.total, {"a": [left, (right, 5)], "b": top})
        assert bottom.result(timeout=60) == 10 + 11 + 5 + 9


def test_dependency_failed_never_runs(root: Path, tmp_path: Path) -> None:
    log = tmp_path / "ran"
    with corral.Executor(id="depfail", root=root, max_workers=2) as ex:
        bad = ex.submit(calls.fail, "first")
        after = ex.submit(calls.counted, str(log), bad)
        with pytest.raises(corral.DependencyFailed, match="calls.fail") as info:
            after.result(timeout=60)
        assert "executor_calls.fail" in info.value.dependency
    assert not log.exists()


def test_nested_fib_with_one_worker(root: Path) -> None:
    with corral.Executor(id="fib", root=root, max_workers=1) as ex:
        assert ex.submit(calls.fib, 10).result(timeout=300) == 55
    recs = records(root, "fib")
    paused = [r for r in recs if isinstance(r, RunUpdate) and r.state == "PAUSED"]
    yields = [r for r in recs if isinstance(r, Request) and r.action == "yield"]
    assert paused and len(yields) == len(paused)


def test_concurrent_futures_wait_and_as_completed_give_the_slot_back(root: Path) -> None:
    """With one worker, a call that waits on its nested calls through concurrent.futures.wait
    or as_completed can only finish if the wait frees its slot (else the nested calls never
    start: the test would hit its timeout)."""
    with corral.Executor(id="cfwait", root=root, max_workers=1) as ex:
        assert ex.submit(calls.wait_on_two, 2).result(timeout=300) == 4 + 9 + 16 + 25
        assert ex.submit(calls.collect_as_completed, 4).result(timeout=300) == [0, 1, 4, 9]
    recs = records(root, "cfwait")
    yields = [r for r in recs if isinstance(r, Request) and r.action == "yield"]
    paused = [r for r in recs if isinstance(r, RunUpdate) and r.state == "PAUSED"]
    assert len(yields) >= 3 and len(paused) == len(yields)


def test_the_executor_pickles_as_a_handle(root: Path) -> None:
    with corral.Executor(id="handle", root=root, max_workers=1) as ex:
        assert ex.submit(calls.nested_with_handle, ex, 6).result(timeout=120) == 37


def test_waiting_on_itself_is_an_error(root: Path) -> None:
    with (
        corral.Executor(id="selfwait", root=root, max_workers=2) as ex,
        pytest.raises(corral.CallError, match="waits for itself"),
    ):
        ex.submit(calls.wait_for_myself, 1).result(timeout=60)


def test_unpicklable_argument_and_result(root: Path) -> None:
    with corral.Executor(id="pickles", root=root, max_workers=2) as ex:
        arg = ex.submit(calls.square, threading.Lock())
        with pytest.raises(corral.CallError, match="an argument cannot be pickled"):
            arg.result(timeout=10)
        res = ex.submit(calls.unpicklable_result)
        with pytest.raises(corral.CallError, match="result of .*unpicklable_result cannot be pickled"):
            res.result(timeout=60)
        assert ex.submit(calls.square, 4).result(timeout=60) == 16


def test_logs_status_and_identity(root: Path) -> None:
    with corral.Executor(id="visible", root=root, max_workers=2) as ex:
        f = ex.submit(calls.say, "hello from a call")
        assert f.result(timeout=60) == "hello from a call"
        again = ex.submit(calls.say, "hello from a call")
        assert again is f  # same identity, same future
        keyed = ex.with_options(key="k1").submit(calls.square, 2)
        assert keyed.result(timeout=60) == 4
    tail = cli(root, "tail", "visible", str(f.job))
    assert "hello from a call" in tail.stdout, tail
    with corral.Executor(id="visible", root=root) as ex:
        # a new driver: the stored result comes back, nothing runs again
        assert ex.with_options(key="k1").submit(calls.square, 3).result(timeout=60) == 4
    jobs = json.loads(cli(root, "status", "visible", "--jobs", "--json").stdout)
    assert "visible" in json.dumps(jobs)


def test_timeout_and_retries(root: Path, tmp_path: Path) -> None:
    with corral.Executor(id="retry", root=root, max_workers=4) as ex:
        flaky = [ex.with_options(retries=1).submit(calls.flaky, str(tmp_path), i) for i in range(4)]
        assert [f.result(timeout=120) for f in flaky] == [0, 1, 2, 3]
        slow = ex.with_options(timeout=0.5).submit(calls.counted, str(tmp_path / "slow"), 1, "/nonexistent")
        with pytest.raises(corral.CallFailed):
            slow.result(timeout=60)
    starts = (tmp_path / "starts").read_text().split()
    assert sorted(starts) == sorted([str(i) for i in range(4)] * 2)


def test_submit_after_shutdown_is_refused(root: Path) -> None:
    ex = corral.Executor(id="closed", root=root, max_workers=1)
    ex.shutdown()
    with pytest.raises(RuntimeError):
        ex.submit(calls.square, 1)


def test_the_supervisor_keeps_none_of_the_drivers_descriptors(root: Path) -> None:
    r, w = os.pipe()  # e.g. the driver's stdout piped into `tee`: must not be held open
    try:
        with corral.Executor(id="fds", root=root, max_workers=1) as ex:
            assert ex.submit(calls.square, 3).result(timeout=60) == 9
            holder = lock_holder(root / "fds" / "journal")
            assert holder is not None and holder != os.getpid()
            pipe = os.readlink(f"/proc/self/fd/{w}")
            theirs = {os.readlink(f"/proc/{holder}/fd/{fd}") for fd in os.listdir(f"/proc/{holder}/fd")}
            assert pipe not in theirs
    finally:
        os.close(r)
        os.close(w)


def test_an_end_that_overtakes_the_answer_to_its_submit_is_kept(root: Path, monkeypatch) -> None:
    """A fast call can end, and its end come on the watch stream, before the driver has read
    the answer naming the call's job: the driver keeps that end for when the answer comes."""
    from corral.executor import client

    delivered = threading.Event()
    real_ask = client.ask

    with corral.Executor(id="overtaken", root=root, max_workers=2) as ex:
        assert ex.submit(calls.square, 2).result(timeout=60) == 4  # the supervisor runs
        driver = ex._driver
        assert driver.watch is not None
        on_ends = driver.watch.on_ends

        def watched(ends: list) -> None:
            on_ends(ends)
            if ends:
                delivered.set()

        driver.watch.on_ends = watched

        def slow_ask(address, message, timeout=60.0):
            answer = real_ask(address, message, timeout)
            if message.get("op") == "calls":  # hold the answer until the end was delivered
                assert delivered.wait(60), "the call's end never came on the watch stream"
            return answer

        monkeypatch.setattr(client, "ask", slow_ask)
        assert ex.submit(calls.square, 9).result(timeout=60) == 81
