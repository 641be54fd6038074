"""The executor's control requests at the boundary: hostile input is refused, nothing recorded."""

from __future__ import annotations

import concurrent.futures as cf
import os
import subprocess
import sys
import time
from pathlib import Path

import executor_calls as calls
import pytest

import corral
from corral.core.records import JobsAdded, Request, decode
from corral.executor import client
from corral.journal import read_journal
from corral.supervisor.layout import Layout
from corral.supervisor.session import replay

GOOD = "0" * 32


@pytest.fixture
def live(root: Path):  # type: ignore[no-untyped-def]
    ex = corral.Executor(id="hostile", root=root, max_workers=1)
    yield ex
    ex.shutdown(wait=False, cancel_futures=True)


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        ({"op": "calls", "rows": [{"call": "not-a-hash"}]}, "call"),
        ({"op": "calls", "rows": [{"call": GOOD, "retries": -1}]}, "retries"),
        ({"op": "calls", "rows": [{"call": GOOD, "retries": "two"}]}, "retries"),
        ({"op": "calls", "rows": [{"call": GOOD, "shell": "rm -rf /"}]}, "shell"),
        ({"op": "calls", "rows": [{"call": GOOD, "timeout": 0}]}, "timeout"),
        ({"op": "calls", "rows": []}, "rows"),
        ({"op": "calls", "rows": "x" * 1000}, "rows"),
        ({"op": "calls", "rows": [{"call": GOOD, "fn": "f" * 501}]}, "fn"),
        ({"op": "yield", "job": -1, "calls": [GOOD]}, "job"),
        ({"op": "yield", "job": 0, "calls": []}, "calls"),
        ({"op": "yield", "job": 0, "calls": [GOOD]}, "not a running call"),
        ({"op": "yield", "job": 0, "calls": [GOOD], "any": "yes"}, "any"),
        ({"op": "watch", "extra": 1}, "extra"),
    ],
)
def test_bad_requests_are_refused_and_record_nothing(live, root: Path, request_, expected) -> None:  # type: ignore[no-untyped-def]
    answer = client.ask(live.layout.control, request_)
    assert answer["ok"] is False and expected in answer["error"], answer
    recs = [decode(p) for p in read_journal(root / "hostile" / "journal").payloads]
    assert not [r for r in recs if isinstance(r, JobsAdded | Request)]  # nothing of it recorded
    assert live.submit(calls.square, 5).result(timeout=60) == 25  # still serving


def test_garbage_bytes_get_an_answer(live) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(live.layout.control)
        sock.sendall(b"\xff\xfe{not json\n")
        assert b'"ok": false' in sock.recv(4096)
    assert live.submit(calls.square, 6).result(timeout=60) == 36


def test_executor_requests_to_a_plain_ensemble_are_refused(root: Path, tmp_path: Path) -> None:
    spec = tmp_path / "e.yaml"
    spec.write_text("name: e\njob: {cmd: sleep 30}\nparams: {i: [0]}\n")
    env = dict(os.environ)
    env.pop("CORRAL_TASK_ID", None)
    base = [sys.executable, "-m", "corral", "--root", str(root)]
    subprocess.run([*base, "run", str(spec), "--id", "plain", "--detach"], check=True, env=env, timeout=60)
    try:
        answer = client.ask(Layout(root, "plain").control, {"op": "calls", "rows": [{"call": GOOD}]})
        assert answer == {"ok": False, "error": "calls: this task is not an executor"}
    finally:
        subprocess.run([*base, "kill", "plain"], env=env, timeout=60)


def test_corral_kill_ends_an_executor(root: Path, tmp_path: Path) -> None:
    ex = corral.Executor(id="killed", root=root, max_workers=2)
    fut = ex.submit(calls.counted, str(tmp_path / "log"), 1, str(tmp_path / "never"))
    env = dict(os.environ)
    env.pop("CORRAL_TASK_ID", None)
    while not (tmp_path / "log").exists():  # the call started
        assert not fut.done()
        cf.wait([fut], timeout=0.05)
    done = subprocess.run(
        [sys.executable, "-m", "corral", "--root", str(root), "kill", "killed"], env=env, timeout=60
    )
    assert done.returncode == 0
    with pytest.raises(corral.CallFailed, match="signal 15") as info:
        fut.result(timeout=60)
    assert info.value.state == "KILLED"
    ex.shutdown(wait=False)
    deadline = time.monotonic() + 60
    while (state := replay(Layout(root, "killed"))[0].state.value) != "KILLED":  # the ensemble ends
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
