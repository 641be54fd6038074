"""The heartbeat watchdog on a real Slurm: a silent job is recorded FAILED, then scancelled
(also by a recovered launcher when the first one died between the record and the scancel)."""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from corral.backends.slurm_client import SlurmClient


@pytest.fixture
def task_id(slurm: SlurmClient) -> Iterator[str]:
    ident = f"wd-{uuid.uuid4().hex[:8]}"
    yield ident
    subprocess.run(["scancel", f"--name=corral-{ident}"], capture_output=True, check=False)


def _records(corral, task_id: str) -> list[dict]:
    out = corral("read", task_id, "--raw", "--json", check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_silent_slurm_job_cancelled_even_across_a_launcher_crash(corral, spec_file, task_id, wait_terminal):
    spec = spec_file("""
name: wd
backend: slurm
slurm: {poll_interval: 0.5}
job:
  cmd: exec sleep 600
  heartbeat: 2
params:
  i: [0]
""")
    # the launcher dies right before its scancel: the verdict is in the journal, the job runs on
    launcher = corral.start("run", str(spec), "--id", task_id, env={"CORRAL_CRASH": "cancel"})
    assert launcher.wait(timeout=120) == -signal.SIGKILL
    records = _records(corral, task_id)
    failed = [r for r in records if r["type"] == "Transition" and r["state"] == "FAILED" and r["job"] >= 0]
    assert [(r["job"], r["reason"], r["cause"]) for r in failed] == [(0, "no heartbeat for 2s", "heartbeat")]
    slurm_id = next(r for r in records if r["type"] == "Submitted")["ids"][0]
    alive = subprocess.run(["squeue", "-h", "-j", slurm_id, "-o", "%T"], capture_output=True, text=True)
    assert "RUNNING" in alive.stdout or "PENDING" in alive.stdout, alive.stdout

    result = corral("recover", task_id, timeout=120)
    assert result.returncode == 1, result.stderr  # the ensemble FAILED (no retries)
    ended = wait_terminal([slurm_id], timeout=60)
    assert ended[slurm_id].state.value == "CANCELLED", ended
    view = corral.status(task_id)
    assert view["state"] == "FAILED" and view["jobs"]["failed"] == 1, view
