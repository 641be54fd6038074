"""A real `corral serve` process: the token file, the loopback rule, control and the live
event stream over a real socket."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from observe_helpers import Corral, Server, free_port


@pytest.fixture(scope="module")
def server(observed: Corral) -> Any:
    token_file = observed.root / "serve.token"
    if token_file.exists():
        token_file.unlink()
    server = Server(observed.root)
    yield server
    output = server.stop()
    assert "Traceback" not in output, output


def test_first_start_creates_a_private_token(server: Server, observed: Corral) -> None:
    token_file = observed.root / "serve.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(token_file.read_text().strip()) >= 32


def test_reads_need_no_token_on_loopback_but_control_does(server: Server, observed: Corral) -> None:
    token = (observed.root / "serve.token").read_text().strip()
    listed = httpx.get(server.url + "/api/v1/tasks", timeout=10)
    assert listed.status_code == 200 and {v["id"] for v in listed.json()} >= {"web-1", "sweep-1", "live-1"}
    assert httpx.post(server.url + "/api/v1/tasks/live-1/jobs/0/heartbeat", timeout=10).status_code == 401
    beat = httpx.post(
        server.url + "/api/v1/tasks/live-1/jobs/0/heartbeat",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert beat.status_code == 200, beat.text


def test_event_stream_delivers_new_records(server: Server, observed: Corral) -> None:
    token = (observed.root / "serve.token").read_text().strip()
    size = httpx.get(server.url + "/api/v1/tasks/live-1/events", params={"limit": 1}, timeout=10).json()[
        "size"
    ]
    url = server.url + "/api/v1/tasks/live-1/events/stream"
    with httpx.stream("GET", url, params={"after": size}, timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        added = httpx.post(
            server.url + "/api/v1/tasks/live-1/jobs",
            json={"params": [{"n": 42}]},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert added.status_code == 200, added.text
        for line in stream.iter_lines():
            if line.startswith("data:"):
                record = json.loads(line[5:])
                assert record["offset"] >= size
                if record["type"] == "JobsAdded":
                    assert record["params"] == [{"n": 42}]
                    break


def test_off_loopback_every_request_needs_the_token(observed: Corral, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("a-token-long-enough-for-the-rule\n")
    token_file.chmod(0o600)
    server = Server(observed.root, "--token-file", str(token_file), host="0.0.0.0")
    try:
        url = server.url.replace("0.0.0.0", "127.0.0.1")
        assert httpx.get(url + "/api/v1/tasks", timeout=10).status_code == 401
        good = httpx.get(
            url + "/", headers={"Authorization": "Bearer a-token-long-enough-for-the-rule"}, timeout=10
        )
        assert good.status_code == 200
    finally:
        server.stop()


def test_a_bad_token_file_is_one_line_exit_2(observed: Corral, tmp_path: Path) -> None:
    open_file = tmp_path / "token"
    open_file.write_text("a-token-long-enough-for-the-rule\n")
    open_file.chmod(0o644)
    for path in (open_file, tmp_path / "missing"):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "corral",
                "--root",
                str(observed.root),
                "serve",
                "--port",
                str(free_port()),
                "--token-file",
                str(path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and str(path) in result.stderr
