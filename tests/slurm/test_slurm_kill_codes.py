"""`corral kill` of a Slurm task and an external scancel give the same exit code: a signal
death is -N, as for local runs (issue 9), in the task's end and in its process table."""

from __future__ import annotations

import subprocess
import uuid

from corral.backends.slurm_client import SlurmClient

# One process, no shell: this cluster tracks a job's processes with proctrack/linuxproc, which
# signals them one at a time, so a shell running `sleep 600; true` could see its sleep die first
# and finish its script (`true`, exit 0) before its own SIGTERM arrived (seen 1 run in 6). The
# run's exit is then truly 0, not a wrong mapping; with one process the signal death is certain.
SPEC = """
name: k
backend: slurm
slurm: {poll_interval: 0.5}
processes:
  - name: a
    argv: [sleep, '600']
"""


def _running(corral, task_id: str) -> bool:
    view = corral.view(task_id)
    runs = [r for p in (view or {}).get("processes", []) for r in p["runs"]]
    return bool(runs) and runs[-1]["state"] == "RUNNING"


def test_kill_and_external_scancel_agree_on_minus_15(corral, spec_file, slurm: SlurmClient) -> None:
    spec = spec_file(SPEC)
    ids = [f"kc-{uuid.uuid4().hex[:6]}", f"kc-{uuid.uuid4().hex[:6]}"]
    try:
        for task_id in ids:
            corral("run", str(spec), "--id", task_id, "--detach", check=True)
        for task_id in ids:
            corral.wait_for(lambda t=task_id: _running(corral, t), timeout=240, interval=0.5)
        corral("kill", ids[0], check=True, timeout=120)
        subprocess.run(["scancel", f"--name=corral-{ids[1]}"], check=True)
        for task_id in ids:
            corral.wait_for(
                lambda t=task_id: corral.status(t)["state"] == "KILLED", timeout=180, interval=0.5
            )
            end = [
                line
                for line in corral("read", task_id, check=True).stdout.splitlines()
                if "task -> KILLED" in line
            ]
            assert "exit -15" in end[-1], end
            run = corral.status(task_id)["processes"][0]["runs"][-1]
            assert run["exit_code"] == -15, run
    finally:
        for task_id in ids:
            subprocess.run(["scancel", f"--name=corral-{task_id}"], capture_output=True, check=False)
