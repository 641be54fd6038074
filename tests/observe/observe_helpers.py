"""Helpers and fixtures of the observer tests: a root with a finished task, a finished ensemble
with failed jobs and a live ensemble whose jobs keep printing, built once per module with the
real CLI; and the app over it. Test modules import this module (conftest.py names the fixtures)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from root_processes import marked

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

TASK = """
name: web
processes:
  - name: setup
    cmd: echo setting up; echo warning >&2
  - name: server
    cmd: for i in 1 2 3; do echo line $i; done; exit 3
    after: [setup]
    max_failures: 2
"""
SWEEP = """
name: sweep
job:
  cmd: echo seed {{params.seed}}; case {{params.seed}} in *0|*5) exit 1;; esac
params:
  seed: {range: [0, 120]}
job_limit: 8
"""
LIVE = """
name: live
job:
  cmd: i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done
params:
  n: [1, 2]
job_limit: 0
"""


class Corral:
    """The real CLI against one root (module-scoped: the suite-wide fixture is per test)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = dict(os.environ, CORRAL_ROOT=str(root), PYTHONUNBUFFERED="1")
        self.env.pop("CORRAL_TASK_ID", None)

    def __call__(
        self, *args: str, check: bool = False, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "corral", "--root", str(self.root), *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env)
        if check and result.returncode != 0:
            raise AssertionError(
                f"corral {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def status(self, task_id: str) -> dict[str, Any]:
        views = [v for v in status_json(self, task_id) if v["id"] == task_id]
        assert views
        return views[0]


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def build_root(root: Path, spec_dir: Path) -> Corral:
    corral = Corral(root)
    for name, text in (("task.yaml", TASK), ("sweep.yaml", SWEEP), ("live.yaml", LIVE)):
        (spec_dir / name).write_text(text)
    # both end FAILED (exit 1) by design; anything else (2: a refused spec) breaks every test
    for spec, task_id in (("task.yaml", "web-1"), ("sweep.yaml", "sweep-1")):
        result = corral("run", str(spec_dir / spec), "--id", task_id, "-q")
        assert result.returncode == 1, result.stderr
    corral("run", str(spec_dir / "live.yaml"), "--id", "live-1", "--detach", check=True)
    wait_for(lambda: corral.status("live-1")["jobs"]["running"] == 2)
    return corral


def cleanup(root: Path) -> None:
    for pid in marked(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    base = tmp_path_factory.mktemp("observe")
    root = base / "root"
    root.mkdir()
    try:
        yield build_root(root, base)
    finally:
        cleanup(root)


@pytest.fixture(scope="module")
def client(observed: Corral) -> Iterator[Any]:
    from corral.observe.app import create_app

    with app_client(create_app(observed.root, TOKEN)) as c:
        yield c


def app_client(app: Any) -> Any:
    """Starlette's TestClient (httpx underneath) without its warning about a future httpx2."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # StarletteDeprecationWarning is a UserWarning
        from starlette.testclient import TestClient

        return TestClient(app)


def status_json(corral: Corral, *args: str) -> list[dict[str, Any]]:
    out = corral("status", *args, "--json", check=True)
    return json.loads(out.stdout)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A real `corral serve` process."""

    def __init__(self, root: Path, *args: str, host: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "corral",
                "--root",
                str(root),
                "serve",
                "--host",
                host,
                "--port",
                str(self.port),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        import httpx

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"corral serve exited: {self.proc.stdout.read() if self.proc.stdout else ''}"
                )
            try:
                httpx.get(self.url + "/metrics", timeout=1, headers=AUTH)
                return True
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=30, interval=0.1)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out
