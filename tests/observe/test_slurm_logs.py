"""The logs of a Slurm job (a task of its own under slurm/JOB/SLURM_ID/ on the shared disk)
through the API, on the local single-node Slurm."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from observe_helpers import TOKEN, Corral, app_client, cleanup

from corral.backends.slurm_client import SlurmClient
from corral.observe.app import create_app


def test_a_slurm_jobs_log_is_served(slurm: SlurmClient, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    corral = Corral(root)
    task_id = f"obs-{uuid.uuid4().hex[:8]}"
    spec = tmp_path / "spec.yaml"
    spec.write_text("""
name: remote
backend: slurm
slurm: {poll_interval: 0.5}
job:
  cmd: 'echo "job {{params.i}} on $SLURM_JOB_ID"; echo oops >&2'
params:
  i: [0, 1, 2]
""")
    try:
        result = corral("run", str(spec), "--id", task_id, "-q", timeout=300)
        assert result.returncode == 0, result.stderr
        with app_client(create_app(root, TOKEN)) as client:
            log = client.get(f"/api/v1/tasks/{task_id}/logs", params={"job": 1})
            assert log.status_code == 200, log.text
            assert log.json()["data"].startswith("job 1 on ") and log.json()["live"] is False
            err = client.get(f"/api/v1/tasks/{task_id}/logs", params={"job": 2, "stream": "stderr"}).json()
            assert err["data"] == "oops\n"
            assert client.get(f"/api/v1/tasks/{task_id}/logs", params={"job": 3}).status_code == 404
    finally:
        subprocess.run(["scancel", f"--name=corral-{task_id}"], capture_output=True, check=False)
        cleanup(root)
