"""The JSON API against the app (httpx through Starlette's TestClient) over a real root."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from observe_helpers import AUTH, Corral, status_json, wait_for


def _without_volatile(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in view.items() if k != "as_of"} for view in views if view["id"] != "live-1"]


def test_task_list_is_status_json(client: Any, observed: Corral) -> None:
    answer = client.get("/api/v1/tasks")
    assert answer.status_code == 200
    ids = [v["id"] for v in answer.json()]
    assert ids == ["live-1", "sweep-1", "web-1"]
    # finished tasks: exactly what `corral status --json` prints (the live one keeps moving)
    cli = {v["id"]: v for v in status_json(observed)}
    for view in _without_volatile(answer.json()):
        expected = {k: v for k, v in cli[view["id"]].items() if k != "as_of"}
        assert {k: view.get(k) for k in expected} == expected


def test_task_list_filters_by_pattern_and_state(client: Any) -> None:
    assert [v["id"] for v in client.get("/api/v1/tasks", params={"pattern": "s*"}).json()] == ["sweep-1"]
    failed = client.get("/api/v1/tasks", params={"state": "FAILED"}).json()
    assert sorted(v["id"] for v in failed) == ["sweep-1", "web-1"]
    assert client.get("/api/v1/tasks", params={"state": "ACTIVE"}).json()[0]["id"] == "live-1"
    bad = client.get("/api/v1/tasks", params={"state": "SLEEPY"})
    assert bad.status_code == 422 and "state" in bad.json()["error"]


def test_one_task_has_processes_and_every_run(client: Any) -> None:
    task = client.get("/api/v1/tasks/web-1").json()
    assert task["state"] == "FAILED" and task["kind"] == "task"
    server = next(p for p in task["processes"] if p["name"] == "server")
    assert [(r["run"], r["state"], r["exit_code"]) for r in server["runs"]] == [
        (0, "FAILED", 3),
        (1, "FAILED", 3),
    ]
    ensemble = client.get("/api/v1/tasks/sweep-1").json()
    assert ensemble["jobs"] == {
        "total": 120,
        "pending": 0,
        "running": 0,
        "succeeded": 96,
        "failed": 24,
        "killed": 0,
        "lost": 0,
    }
    missing = client.get("/api/v1/tasks/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["error"]


def test_job_pages_filter_by_state(client: Any) -> None:
    page = client.get(
        "/api/v1/tasks/sweep-1/jobs", params={"state": "FAILED", "offset": 2, "limit": 3}
    ).json()
    assert page["matching"] == 24
    assert [row["job"] for row in page["jobs"]] == [10, 15, 20]
    assert all(row["state"] == "FAILED" and row["exit_code"] == 1 for row in page["jobs"])
    assert page["jobs"][0]["params"] == {"seed": 10}
    everything = client.get("/api/v1/tasks/sweep-1/jobs", params={"limit": 1000}).json()
    assert everything["matching"] == 120 and len(everything["jobs"]) == 120
    past_end = client.get("/api/v1/tasks/sweep-1/jobs", params={"offset": 5000}).json()
    assert past_end["jobs"] == []
    assert client.get("/api/v1/tasks/web-1/jobs").status_code == 404  # a task has no jobs


def test_events_after_an_offset_resume_where_a_page_ended(client: Any) -> None:
    first = client.get("/api/v1/tasks/web-1/events", params={"limit": 3}).json()
    assert first["records"][0]["type"] == "Opened"
    assert len(first["records"]) == 3
    rest = client.get("/api/v1/tasks/web-1/events", params={"after": first["next"]}).json()
    whole = client.get("/api/v1/tasks/web-1/events").json()
    assert first["records"] + rest["records"] == whole["records"]
    assert whole["next"] == whole["size"]
    inside = client.get("/api/v1/tasks/web-1/events", params={"after": first["next"] + 1})
    assert inside.status_code == 400
    beyond = client.get("/api/v1/tasks/web-1/events", params={"after": whole["size"] + 10})
    assert beyond.status_code == 400


def test_logs_by_byte_range(client: Any) -> None:
    log = client.get("/api/v1/tasks/web-1/logs", params={"process": "server", "run": 0}).json()
    assert log["data"] == "line 1\nline 2\nline 3\n" and log["file"] == "server.0.stdout"
    part = client.get(
        "/api/v1/tasks/web-1/logs", params={"process": "server", "run": 0, "offset": 7, "limit": 6}
    ).json()
    assert part["data"] == "line 2" and part["next"] == 13
    err = client.get("/api/v1/tasks/web-1/logs", params={"process": "setup", "stream": "stderr"}).json()
    assert err["data"] == "warning\n"
    job = client.get("/api/v1/tasks/sweep-1/logs", params={"job": 15}).json()
    assert job["data"] == "seed 15\n" and job["live"] is False
    assert client.get("/api/v1/tasks/web-1/logs", params={"process": "nope"}).status_code == 404


def test_logs_include_rotated_backups(client: Any, observed: Corral) -> None:
    logs = observed.root / "web-1" / "logs"
    (logs / "setup.0.stdout.1").write_text("older lines\n")
    try:
        log = client.get("/api/v1/tasks/web-1/logs", params={"process": "setup"}).json()
        assert log["rotated"] == [{"index": 1, "size": 12}]
        old = client.get("/api/v1/tasks/web-1/logs", params={"process": "setup", "rotated": 1}).json()
        assert old["data"] == "older lines\n" and old["file"] == "setup.0.stdout.1"
    finally:
        (logs / "setup.0.stdout.1").unlink()


def test_a_live_log_grows(client: Any) -> None:
    first = client.get("/api/v1/tasks/live-1/logs", params={"job": 0}).json()
    assert first["live"] is True and "tick" in first["data"]
    later = wait_for(
        lambda: (
            page
            if (
                page := client.get(
                    "/api/v1/tasks/live-1/logs", params={"job": 0, "offset": first["next"]}
                ).json()
            )["data"]
            else None
        )
    )
    assert later["data"].startswith("tick ")


def test_resources_of_live_runs(client: Any) -> None:
    data = client.get("/api/v1/tasks/live-1/resources").json()
    assert {(r["job"], r["process"]) for r in data["runs"]} == {(0, "main"), (1, "main")}
    for run in data["runs"]:
        assert run["rss"] > 0 and run["processes"] >= 1 and run["cpu_percent"] >= 0
        assert os.path.exists(f"/proc/{run['pid']}")
    assert client.get("/api/v1/tasks/web-1/resources").json()["runs"] == []


def test_metrics_are_prometheus_text(client: Any) -> None:
    text = client.get("/metrics").text
    assert 'corral_tasks{kind="ensemble",state="FAILED"} 1.0' in text
    assert 'corral_jobs{ensemble="sweep-1",state="failed"} 24.0' in text
    assert 'corral_runs_failed_total{task="web-1"} 2.0' in text
    assert 'corral_runs_started_total{task="sweep-1"} 120.0' in text
    assert "corral_live_supervisors 1.0" in text
    assert 'corral_journal_bytes{task="web-1"}' in text


def test_submit_heartbeat_pause_resume_reach_the_live_supervisor(client: Any, observed: Corral) -> None:
    added = client.post("/api/v1/tasks/live-1/jobs", json={"params": [{"n": 7}]}, headers=AUTH)
    assert added.status_code == 200, added.text
    (job,) = added.json()["jobs"]
    wait_for(lambda: client.get("/api/v1/tasks/live-1").json()["jobs"]["total"] == job + 1)
    beat = client.post(f"/api/v1/tasks/live-1/jobs/{job}/heartbeat", headers=AUTH)
    assert beat.status_code == 200, beat.text
    assert client.post("/api/v1/tasks/live-1/jobs/99999/heartbeat", headers=AUTH).status_code == 404
    paused = client.post("/api/v1/tasks/live-1/pause", json={"job": 0}, headers=AUTH)
    assert paused.status_code == 200, paused.text

    def run_state(job_number: int) -> str:
        page = client.get("/api/v1/tasks/live-1/events").json()["records"]
        updates = [r for r in page if r["type"] == "RunUpdate" and r["job"] == job_number]
        return str(updates[-1]["state"])

    wait_for(lambda: run_state(0) == "PAUSED")
    resumed = client.post("/api/v1/tasks/live-1/resume", json={"job": 0}, headers=AUTH)
    assert resumed.status_code == 200
    wait_for(lambda: run_state(0) == "RUNNING")


def test_control_of_an_ended_task_is_a_conflict(client: Any) -> None:
    for op in ("kill", "lose", "pause", "resume"):
        answer = client.post(f"/api/v1/tasks/web-1/{op}", json={}, headers=AUTH)
        assert answer.status_code == 409 and "already FAILED" in answer.json()["error"]
    assert client.post("/api/v1/tasks/sweep-1/jobs", json={"params": [{}]}, headers=AUTH).status_code == 409


def test_kill_with_a_dead_supervisor_recovers_and_kills(tmp_path: Any) -> None:
    from observe_helpers import LIVE, TOKEN, app_client, cleanup

    from corral.observe.app import create_app

    root = tmp_path / "root"
    root.mkdir()
    corral = Corral(root)
    (tmp_path / "live.yaml").write_text(LIVE)
    corral("run", str(tmp_path / "live.yaml"), "--id", "orphan", "--detach", check=True)
    try:
        wait_for(lambda: corral.status("orphan")["jobs"]["running"] == 2)
        os.kill(corral.status("orphan")["supervisor_pid"], signal.SIGKILL)
        wait_for(lambda: not corral.status("orphan")["supervised"])
        with app_client(create_app(root, TOKEN)) as client:
            answer = client.post("/api/v1/tasks/orphan/kill", json={"grace": 1}, headers=AUTH)
            assert answer.status_code in (200, 202), answer.text
            deadline = time.monotonic() + 60
            while client.get("/api/v1/tasks/orphan").json()["state"] != "KILLED":
                assert time.monotonic() < deadline, client.get("/api/v1/tasks/orphan").json()
                time.sleep(0.1)
    finally:
        cleanup(root)


def test_the_list_is_gzipped_for_clients_that_accept_it(client: Any) -> None:
    zipped = client.get("/api/v1/tasks", headers={"Accept-Encoding": "gzip"})
    plain = client.get("/api/v1/tasks", headers={"Accept-Encoding": "identity"})
    assert zipped.headers["content-encoding"] == "gzip" and "content-encoding" not in plain.headers
    assert [v["id"] for v in zipped.json()] == [v["id"] for v in plain.json()]


def test_serving_takes_no_lock_while_supervisors_start(client: Any, observed: Corral) -> None:
    """Readers never lock: while the API is polled, no lock of this process appears in
    /proc/locks and new supervisors start without finding a journal locked."""
    import threading

    stop = threading.Event()
    seen: list[str] = []

    def poll() -> None:
        while not stop.is_set():
            for path in ("/api/v1/tasks", "/api/v1/tasks/web-1", "/api/v1/tasks/live-1/jobs", "/metrics"):
                assert client.get(path).status_code == 200
            with open("/proc/locks") as f:
                seen.extend(line for line in f if f" {os.getpid()} " in line)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        for n in range(3):
            result = observed("simplerun", "--id", f"quick-{n}", "--", "true")
            assert result.returncode == 0, result.stderr
    finally:
        stop.set()
        poller.join()
    assert seen == []
    listed = client.get("/api/v1/tasks", params={"pattern": "quick-*"}).json()  # a list not built yet
    assert [(v["id"], v["state"]) for v in listed] == [(f"quick-{n}", "SUCCESS") for n in range(3)]
