"""Shared fixtures: a root directory per test, the real CLI, and no process left behind; a
client for the real Slurm.

The Slurm cluster is started before pytest by ``scripts/slurm-up.sh`` (CI does it in
``.ci/run``). Without a usable cluster the tests that ask for `slurm` skip with the reason,
unless ``CORRAL_REQUIRE_SLURM=1``, in which case they fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.backends.slurm_client import SlurmClient
from root_processes import marked


class Corral:
    """Runs the real `corral` command against one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = dict(os.environ, CORRAL_ROOT=str(root), PYTHONUNBUFFERED="1")
        self.env.pop("CORRAL_TASK_ID", None)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "corral", "--root", str(self.root), *args]

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*args), capture_output=True, text=True, timeout=timeout, env=self.env
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"corral {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start a command in the background (e.g. a supervisor to SIGKILL later)."""
        return subprocess.Popen(
            self.argv(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**self.env, **(env or {})},
            start_new_session=True,
        )

    def status(self, task_id: str) -> dict:
        view = self.view(task_id)
        assert view is not None, f"{task_id}: not listed by corral status"
        return view

    def view(self, task_id: str) -> dict | None:
        """The status view of a task, or None while it is not there yet (a starting supervisor
        may not have written its journal: a predicate polling a start must not fail on that)."""
        import json

        out = self("status", task_id, "--json", check=True)
        views = [v for v in json.loads(out.stdout) if v["id"] == task_id]
        return views[0] if views else None

    def wait_for(self, predicate, timeout: float = 30, interval: float = 0.1):  # type: ignore[no-untyped-def]
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError("condition not met in time")


@pytest.fixture
def corral(tmp_path: Path) -> Iterator[Corral]:
    root = tmp_path / "root"
    root.mkdir()
    yield Corral(root)
    for pid in marked(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def spec_file(tmp_path: Path):  # type: ignore[no-untyped-def]
    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


class Gate:
    """A fifo that test processes block on (`cat FIFO`) until the test releases them: a run that
    lives exactly as long as the test needs, however loaded the machine (no racing a sleep)."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path

    @property
    def cmd(self) -> str:
        """A shell command that waits for the release, then exits 0 (prints nothing)."""
        return f"cat {self.path} > /dev/null"

    def release(self) -> None:
        """Every process reading the fifo now sees its end. Blocks until one is reading."""
        fd = os.open(self.path, os.O_WRONLY)
        os.close(fd)


@pytest.fixture
def gate(tmp_path: Path):  # type: ignore[no-untyped-def]
    made = iter(range(1000))

    def make() -> Gate:
        return Gate(tmp_path / f"gate{next(made)}")

    return make


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The test runs under umask 022, the common default that would leave new files readable
    by all (privacy tests use it: `pytestmark = pytest.mark.usefixtures("umask_022")`)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _unavailable(reason: str) -> None:
    if os.environ.get("CORRAL_REQUIRE_SLURM") == "1":
        pytest.fail(f"Slurm required (CORRAL_REQUIRE_SLURM=1) but {reason}", pytrace=False)
    pytest.skip(f"no usable Slurm: {reason} (start one with scripts/slurm-up.sh as root)")


@pytest.fixture(scope="session")
def slurm() -> SlurmClient:
    """A client for the local cluster; skips (or fails) when there is none."""
    client = SlurmClient(timeout=30)
    if not client.available():
        _unavailable("sbatch/squeue are not installed")
    if not client.sinfo_ok():
        _unavailable("sinfo does not answer or no partition is up")
    return client
