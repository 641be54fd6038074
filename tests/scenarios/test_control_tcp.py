"""The control server on TCP: jobs get tcp:// and the task's token; requests without the right
token are refused and logged; submit/wait over TCP work; garbage over TCP is answered."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

from corral.supervisor.control import request

SPEC = """
name: tcp
control: {{listen: "127.0.0.1:0"}}
job:
  cmd: |
    if [ "{{{{params.role}}}}" = server ]; then
      echo "$CORRAL_CONTROL" > {out}/control
      while [ ! -e {out}/go ]; do sleep 0.05; done
      jobs=$(corral submit --set role=client) && corral wait $jobs && echo "$jobs" > {out}/submitted
    else
      echo client
    fi
params:
  role: [server]
"""


def _tcp(address: str, data: bytes) -> dict | None:
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return json.loads(out) if out else None


def test_tcp_control_with_token(corral, spec_file, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    spec = spec_file(SPEC.format(out=out))
    proc = corral.start("run", str(spec), "--id", "tc1")
    corral.wait_for(lambda: (out / "control").exists() and (out / "control").read_text().strip(), timeout=60)
    address = (out / "control").read_text().strip()
    assert address.startswith("tcp://127.0.0.1:")
    task_dir = corral.root / "tc1"
    assert (task_dir / "control.tcp").read_text().strip() == address
    token_file = task_dir / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()

    missing = _tcp(address, b'{"op":"ping"}\n')
    wrong = _tcp(address, json.dumps({"op": "ping", "token": "x" * len(token)}).encode() + b"\n")
    assert missing == wrong == {"ok": False, "error": "wrong or missing token"}
    refused = _tcp(address, b'{"op":"kill"}\n')  # a kill without the token kills nothing
    assert refused is not None and refused["ok"] is False
    for garbage in (b"\x00\xff garbage\n", b'{"op":"kill","grace":"abc","token":"t"}\n', b"[]\n"):
        answer = _tcp(address, garbage)
        assert answer is None or answer["ok"] is False
    assert request(address, {"op": "ping", "token": token})["ok"]

    (out / "go").touch()  # the job submits and waits over TCP
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert err.count("wrong or missing token") >= 3, err  # recorded in the supervisor's log
    assert (out / "submitted").read_text().strip() == "1"
    view = corral.status("tc1")
    assert view["jobs"]["total"] == 2 and view["jobs"]["succeeded"] == 2


def test_listen_flag_gives_runs_the_address_and_token(corral, spec_file, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    spec = spec_file(f"""
name: lst
processes:
  - {{name: main, cmd: 'env | grep ^CORRAL_ > {env_file}'}}
""")
    result = corral("run", str(spec), "--id", "ls1", "--listen", "127.0.0.1:0")
    assert result.returncode == 0, result.stderr
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert env["CORRAL_CONTROL"].startswith("tcp://127.0.0.1:")
    assert env["CORRAL_TOKEN"] == (corral.root / "ls1" / "token").read_text().strip()


def test_local_tasks_do_not_listen_on_tcp_unless_asked(corral, spec_file, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    spec = spec_file(f"name: loc\nprocesses:\n  - {{name: main, cmd: 'env > {env_file}'}}\n")
    assert corral("run", str(spec), "--id", "lo1").returncode == 0
    assert "CORRAL_TOKEN" not in env_file.read_text()
    assert not (corral.root / "lo1" / "token").exists()


def test_bad_listen_addresses_are_one_line_errors(corral, spec_file) -> None:
    spec = spec_file('name: bad\ncontrol: {listen: "nohost"}\nprocesses:\n  - {name: main, cmd: "true"}\n')
    result = corral("run", str(spec), "--id", "b1")
    assert result.returncode == 2 and "control.listen" in result.stderr and "Traceback" not in result.stderr
    good = spec_file("name: ok\nprocesses:\n  - {name: main, cmd: 'true'}\n", name="ok.yaml")
    result = corral("run", str(good), "--id", "b2", "--listen", "127.0.0.1:99999")
    assert result.returncode == 2 and "--listen" in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists(corral.root / "b2")
