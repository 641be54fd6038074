"""A live Slurm task as readers see it, on the local single-node Slurm: its process table is
its node's (RUNNING, pid, host) while it runs, in `status`, `read` and the API, and the CPU and
memory of its runs, measured on the node, reach the API (issues 9 and 12)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

from observe_helpers import TOKEN, Corral, app_client, cleanup, wait_for

from corral.backends.slurm_client import SlurmClient
from corral.observe.app import create_app


def _running(corral: Corral, task_id: str) -> dict[str, Any] | None:
    view = corral.status(task_id)
    runs = {p["name"]: p["runs"][-1] for p in view.get("processes", []) if p["runs"]}
    if len(runs) == 2 and all(r["state"] == "RUNNING" for r in runs.values()):
        return runs
    return None


def test_a_live_slurm_task_shows_its_nodes_runs_and_their_resources(
    slurm: SlurmClient, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    corral = Corral(root)
    task_id = f"live-{uuid.uuid4().hex[:8]}"
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    spec = tmp_path / "spec.yaml"
    # `yes` burns CPU until the gate opens, so the node has figures to report
    spec.write_text(f"""
name: live
backend: slurm
slurm: {{poll_interval: 0.5}}
processes:
  - name: busy
    cmd: 'yes > /dev/null & cat {fifo} > /dev/null; kill $!'
  - name: idle
    cmd: 'cat {fifo} > /dev/null'
""")
    host = socket.gethostname()
    try:
        corral("run", str(spec), "--id", task_id, "--detach", check=True)
        runs = wait_for(lambda: _running(corral, task_id), timeout=300, interval=0.5)
        assert all(r["pid"] and r["host"] == host for r in runs.values()), runs
        table = corral("status", task_id, "-vv", check=True).stdout
        assert f"@{host}" in table and "WAITING" not in table, table

        history = corral("read", task_id, check=True).stdout
        assert "] busy[0] -> RUNNING (pid " in history and "[node " in history, history
        lines = [
            json.loads(line) for line in corral("read", task_id, "--json", check=True).stdout.splitlines()
        ]
        assert any(r.get("node") and r["type"] == "RunUpdate" and r["state"] == "RUNNING" for r in lines)

        with app_client(create_app(root, TOKEN)) as client:
            task = client.get(f"/api/v1/tasks/{task_id}").json()
            states = {p["name"]: (p["runs"][-1]["state"], p["runs"][-1]["host"]) for p in task["processes"]}
            assert states == {"busy": ("RUNNING", host), "idle": ("RUNNING", host)}, task

            def measured() -> dict[str, Any] | None:
                answer = client.get(f"/api/v1/tasks/{task_id}/resources")
                assert answer.status_code == 200, answer.text
                data: dict[str, Any] = answer.json()
                busy = [r for r in data["runs"] if r["process"] == "busy"]
                return data if busy and busy[0]["cpu_percent"] > 0 and len(data["runs"]) == 2 else None

            data = wait_for(measured, timeout=120, interval=0.5)
            assert all(r["host"] == host and r["rss"] > 0 and r["job"] == 0 for r in data["runs"]), data
            assert {r["pid"] for r in data["runs"]} == {r["pid"] for r in runs.values()}
            assert data["rss"] == sum(r["rss"] for r in data["runs"])
            page = client.get(f"/tasks/{task_id}")
            assert page.status_code == 200 and "RUNNING" in page.text

        fd = os.open(fifo, os.O_WRONLY)  # both runs read the gate: let them end
        os.close(fd)
        wait_for(lambda: corral.status(task_id)["state"] == "SUCCESS", timeout=180, interval=0.5)
        with app_client(create_app(root, TOKEN)) as client:
            assert client.get(f"/api/v1/tasks/{task_id}/resources").json()["runs"] == []
        ended = corral.status(task_id)
        assert all(p["runs"][-1]["state"] == "SUCCESS" for p in ended["processes"]), ended
    finally:
        subprocess.run(["scancel", f"--name=corral-{task_id}"], capture_output=True, check=False)
        cleanup(root)
