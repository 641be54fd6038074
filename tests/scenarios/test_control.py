"""The control socket of a live supervisor, attacked: hostile requests, slow clients, huge
submissions, fuzz. It never dies, never journals what its reader would refuse, and finishes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.supervisor.control import MAX_REQUEST, request
from corral.supervisor.layout import Layout

SPEC = """
name: ctl
job:
  cmd: |
    while [ ! -e {go} ]; do sleep 0.05; done
    echo "n={{{{params.n}}}}"
params:
  n: [0, 1]
job_limit: 2
"""


def _raw(path: str, data: bytes, timeout: float = 20.0) -> dict | None:
    """Send raw bytes; the answer, or None if the supervisor closed without one."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
    return json.loads(out) if out else None


def _live(corral, spec_file, tmp_path: Path, task_id: str):  # type: ignore[no-untyped-def]
    go = tmp_path / "go"
    spec = spec_file(SPEC.format(go=go))
    proc = corral.start("run", str(spec), "--id", task_id)
    control = Layout(corral.root, task_id).control

    def up() -> bool:
        try:
            return bool(request(control, {"op": "ping"}).get("ok"))
        except OSError:
            return False

    corral.wait_for(up, timeout=60)
    return proc, control, go


def _finish(corral, proc, go: Path, task_id: str) -> None:  # type: ignore[no-untyped-def]
    go.touch()
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert corral("read", task_id, "--raw", "--json").returncode == 0
    status = corral("status", task_id, "--jobs", "--json")
    assert status.returncode == 0, status.stderr
    assert corral.status(task_id)["state"] == "SUCCESS"


def test_each_hostile_request_is_answered_and_the_supervisor_carries_on(corral, spec_file, tmp_path):
    proc, control, go = _live(corral, spec_file, tmp_path, "h1")
    hostile = [
        b'{"op":"kill","grace":"abc"}\n',
        b'{"op":"kill","job":false}\n',
        b'{"op":"heartbeat","job":1e999}\n',
        b'{"op":"kill","grace":1e999}\n',
        b'{"op":"pause","process":"a","job":0,"grace":"x"}\n',
        b'{"op":"kill","job":7}\n',  # well-formed, but no such job running
        b'{"op":"pause","job":0,"process":"nope"}\n',
        b'{"op":"submit","params":[{"n":99999999999999999999999}]}\n',  # no msgpack integer
        b"\xff\xfe\x00garbage\n",
        b"\n",
    ]
    for data in hostile:
        answer = _raw(control, data)
        assert answer is not None and answer["ok"] is False and answer["error"], data
    assert request(control, {"op": "ping"})["ok"]
    _finish(corral, proc, go, "h1")


def test_a_trickling_client_does_not_hold_the_loop(corral, spec_file, tmp_path):
    proc, control, go = _live(corral, spec_file, tmp_path, "t1")
    stop = threading.Event()
    trickled: list[bytes] = []

    def trickle() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(control)
            try:
                for byte in b'{"op":"ping"}':
                    if stop.wait(0.5):
                        return
                    sock.sendall(bytes([byte]))
                sock.settimeout(30)
                trickled.append(sock.recv(65536))
            except OSError:
                trickled.append(b"")

    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        # while it trickles: other clients are answered and new jobs are taken and run
        for _ in range(5):
            assert request(control, {"op": "ping"}, timeout=5)["ok"]
        answer = request(control, {"op": "submit", "params": [{"n": 5}]}, timeout=5)
        assert answer["ok"] and answer["jobs"] == [2]
        assert request(control, {"op": "status"}, timeout=5)["ok"]
        thread.join(timeout=60)
        # the slow client was dropped at its deadline (13 bytes x 0.5 s > 5 s), answered nothing
        assert trickled == [b""]
    finally:
        stop.set()
        thread.join()
    _finish(corral, proc, go, "t1")


def test_a_request_over_the_limit_is_refused_whole(corral, spec_file, tmp_path):
    proc, control, go = _live(corral, spec_file, tmp_path, "big1")
    rows = [{"n": i, "pad": "x" * 40} for i in range(20_000)]  # ~1.2 MB of rows
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = corral("submit", "--ensemble", "big1", "--jsonl", str(jsonl))
    assert result.returncode == 2 and "in parts" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    # sent raw past the client's own check: refused by the supervisor, which lives on
    answer = _raw(control, b'{"op":"submit","params":[' + b'{"n":1},' * (MAX_REQUEST // 8) + b'{"n":1}]}\n')
    assert answer is None or answer["ok"] is False
    # just under the socket limit, but larger than a journal record once encoded (floats)
    floats = b'{"op":"submit","params":[' + b'{"n":1.5},' * (MAX_REQUEST // 11) + b'{"n":1.5}]}'
    assert len(floats) <= MAX_REQUEST
    answer = _raw(control, floats + b"\n")
    assert answer is not None and answer["ok"] is False and "in parts" in answer["error"]
    view = corral.status("big1")
    assert view["jobs"]["total"] == 2  # nothing of the refused submissions was taken
    _finish(corral, proc, go, "big1")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25,
)
_fields = st.dictionaries(
    st.sampled_from(["job", "grace", "process", "params", "token", "x"]), _json, max_size=4
)
# every op except those that end the ensemble on purpose (kill, lose) or hold it (pause)
_ops = st.sampled_from(["resume", "heartbeat", "submit", "ping", "status", "", "KILL"])
_payloads = (
    st.builds(lambda op, f: json.dumps({"op": op, **f}).encode() + b"\n", _ops, _fields)
    | st.binary(max_size=300)
    | _json.map(lambda v: json.dumps(v).encode() + b"\n")
)


def test_fuzz_a_live_supervisor(corral, spec_file, tmp_path):
    proc, control, go = _live(corral, spec_file, tmp_path, "fz1")

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_payloads)
    def throw(data: bytes) -> None:
        if b'"lose"' in data or b'"kill"' in data or b'"pause"' in data:
            return
        answer = _raw(control, data)
        assert answer is None or isinstance(answer.get("ok"), bool)
        assert proc.poll() is None, "the supervisor died"

    throw()
    assert request(control, {"op": "ping"})["ok"]
    _finish(corral, proc, go, "fz1")


def _daemon_cmd(pidfile):  # type: ignore[no-untyped-def]
    # a daemon that clears its environment (no CORRAL_* marks) and leaves the run's session
    return f"env -i /usr/bin/setsid /bin/sh -c 'echo $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; exec sleep 300' &"


def _wait_dead(pid: int) -> bool:
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("end", ["kill", "success"])
def test_a_daemon_that_cleared_its_environment_dies_with_the_task(corral, tmp_path, end):  # type: ignore[no-untyped-def]
    pidfile = tmp_path / "daemon.pid"
    # the run goes on (or ends) only once the daemon is there
    tail = f"until [ -e {pidfile} ]; do sleep 0.01; done; " + ("sleep 300" if end == "kill" else "true")
    proc = corral.start("simplerun", "--id", "d", "--", "sh", "-c", f"{_daemon_cmd(pidfile)} {tail}")
    pid = int(corral.wait_for(lambda: pidfile.exists() and pidfile.read_text().strip()))
    try:
        if end == "kill":
            corral("kill", "d", "--grace", "1", check=False)
        proc.wait(timeout=60)
        assert corral.status("d")["state"] == ("KILLED" if end == "kill" else "SUCCESS")
        assert _wait_dead(pid), f"escaped daemon {pid} outlived its task"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
