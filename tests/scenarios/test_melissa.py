"""examples/melissa.yaml: a server job asks for client jobs over TCP control, the clients report
to it, it heartbeats, and when its heartbeats stop the launcher restarts it."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _env(clients: int, hang_after: int) -> dict[str, str]:
    return {
        "MELISSA_DIR": str(EXAMPLES / "melissa"),
        "MELISSA_CLIENTS": str(clients),
        "MELISSA_HANG_AFTER": str(hang_after),
    }


def _job_list(corral: Any, task_id: str) -> list[dict[str, Any]]:
    out = corral("status", task_id, "--jobs", "--json", check=True).stdout
    return list(json.loads(out)[0]["job_list"])


def _check(corral: Any, task_id: str, clients: int, restarted: bool) -> None:
    view = corral.status(task_id)
    assert view["state"] == "SUCCESS" and view["jobs"]["succeeded"] == clients + 1, view
    reports = (corral.root / task_id / "jobs" / "0" / "reports.txt").read_text().splitlines()
    assert sorted(int(line.split()[0]) for line in reports) == list(range(1, clients + 1))
    server = next(row for row in _job_list(corral, task_id) if row["job"] == 0)
    assert server["attempts"] == (2 if restarted else 1), server


def test_melissa_server_restarted_when_its_heartbeats_stop_over_tcp(corral: Any, tmp_path: Path) -> None:
    """On this host, with the TCP control path forced: the jobs ask and heartbeat over TCP."""
    spec = yaml.safe_load((EXAMPLES / "melissa.yaml").read_text())
    spec.update(backend="local", control={"listen": "127.0.0.1:0"})
    spec.pop("slurm")
    path = tmp_path / "melissa.yaml"
    path.write_text(yaml.safe_dump(spec))
    corral.env.update(_env(clients=4, hang_after=2))
    result = corral("run", str(path), "--id", "mel", "-q", timeout=180)
    assert result.returncode == 0, result.stderr
    _check(corral, "mel", clients=4, restarted=True)
    logs = sorted((corral.root / "mel" / "logs").glob("0.main.*.stdout"))
    server_log = "".join(p.read_text() for p in logs)
    assert "control tcp://" in server_log and "hanging (no heartbeat)" in server_log
    assert "2 reported before" in server_log  # the second attempt carried on


def _need_slurm() -> None:
    from corral.backends.slurm_client import SlurmClient

    client = SlurmClient(timeout=30)
    if not (client.available() and client.sinfo_ok()):
        if os.environ.get("CORRAL_REQUIRE_SLURM") == "1":
            pytest.fail("no usable Slurm", pytrace=False)
        pytest.skip("no usable Slurm (start one with scripts/slurm-up.sh as root)")


def test_melissa_on_slurm_over_tcp(corral: Any) -> None:
    """On the local Slurm (TCP is the default there): the server job asks for its clients and
    they report to it, all of them Slurm jobs; after two reports the server stops heartbeating,
    and the launcher records it FAILED, cancels its Slurm job and submits it again."""
    _need_slurm()
    task_id = f"mel-slurm-{uuid.uuid4().hex[:6]}"  # the Slurm is shared: cancel only our jobs
    corral.env.update(_env(clients=3, hang_after=2))
    try:
        result = corral("run", str(EXAMPLES / "melissa.yaml"), "--id", task_id, "-q", timeout=300)
        assert result.returncode == 0, result.stderr
        _check(corral, task_id, clients=3, restarted=True)
        attempts = sorted(
            (corral.root / task_id / "slurm" / "0").glob("*_0"), key=lambda p: int(p.name.split("_")[0])
        )
        assert len(attempts) == 2, attempts  # two Slurm jobs for the server: one per attempt
        server_log = "".join(p.read_text() for a in attempts for p in a.glob("logs/*.stdout"))
        assert "control tcp://" in server_log and "hanging (no heartbeat)" in server_log
        assert "2 reported before" in server_log  # the second attempt carried on
        events = corral("read", task_id, check=True).stdout
        assert "no heartbeat for 6s" in events, events
        # the first attempt's Slurm job was cancelled, not left hanging until its time limit:
        # its node supervisor ended (it says how in the job's Slurm output) and Slurm holds
        # nothing of it
        first = attempts[0].name
        ended = (corral.root / task_id / "slurm" / f"slurm-{first}.out").read_text()
        assert f"job 0 ({first}): " in ended, ended
        squeued = subprocess.run(["squeue", "-h", "-j", first, "-o", "%T"], capture_output=True, text=True)
        assert "RUNNING" not in squeued.stdout, squeued.stdout
    finally:
        subprocess.run(["scancel", f"--name=corral-{task_id}"], capture_output=True, check=False)
