"""Pilot workers through the real CLI against the real local Slurm (scripts/slurm-up.sh).

Each test runs `corral run` on an ensemble with `slurm: {pilot: ...}` and checks the outcome in
`corral status --json`, in the launcher's journal (`corral read --raw --json`), in the workers'
ledgers and in Slurm itself. Scaffolding (ids, specs, launchers, readers) is in
slurm_helpers.py and conftest's pilot_id. The Slurm here is shared by other work: worker jobs
keep short time limits so that backfill starts them.
"""

from __future__ import annotations

import collections
import socket
import subprocess
from pathlib import Path

from slurm_helpers import (
    alive_workers,
    control_endpoint,
    fake_hello,
    job_list,
    launched,
    ledger_rows,
    pilot_spec,
    raw_records,
    sigkill_launcher,
    workers_view,
)


def test_pilot_ensemble_runs_jobs_with_retries_and_a_failure(corral, spec_file, pilot_id, slurm, tmp_path):
    task_id = pilot_id("pe")
    flags = tmp_path / "flags"
    flags.mkdir()
    cmd = f"""
i={{{{params.i}}}}
echo "job $i attempt {{{{job.attempt}}}}"
echo "$CORRAL_JOB $CORRAL_TASK_ID" > {flags}/env.$i
if [ $i -eq 7 ]; then exit 3; fi
if [ $i -eq 11 ] && [ ! -e {flags}/11 ]; then touch {flags}/11; exit 4; fi
exit 0
"""
    pilot = 'workers: 2, cpus: 4, time: "5:00", idle_timeout: 30'
    spec = spec_file(pilot_spec("pe", pilot, cmd, 300, top="retries: 1\nretry_backoff: 0.1"))
    result = corral("run", str(spec), "--id", task_id, "-q", timeout=600)
    assert result.returncode == 1, result.stderr  # job 7 fails on purpose

    jobs = {row["job"]: row for row in job_list(corral, task_id)}
    assert len(jobs) == 300
    assert jobs[7]["state"] == "FAILED" and jobs[7]["exit_code"] == 3 and jobs[7]["attempts"] == 2
    assert jobs[11]["state"] == "SUCCESS" and jobs[11]["attempts"] == 2
    others = [row for j, row in jobs.items() if j not in (7, 11)]
    assert all(r["state"] == "SUCCESS" and r["exit_code"] == 0 and r["attempts"] == 1 for r in others)

    # a run sees the ensemble's job number and id, not the worker's own numbering
    seen = {int(f.name[4:]): f.read_text().split() for f in flags.glob("env.*")}
    assert seen == {j: [str(j), task_id] for j in range(300)}

    records = raw_records(corral, task_id)
    handed = collections.Counter()
    for rec in records:
        if rec["type"] == "Submitted":
            assert all(ident.startswith("pilot:") for ident in rec["ids"]), rec
            handed.update(rec["jobs"])
    # every attempt was journaled as handed to a worker before it ran
    assert {j: handed[j] for j in range(300)} == {j: 2 if j in (7, 11) else 1 for j in range(300)}
    # at most two workers (workers: 2, no max_workers), and none left once the ensemble ended
    workers = {row["worker"] for row in ledger_rows(corral.root, task_id)}
    assert 1 <= len(workers) <= 2
    assert alive_workers(slurm, task_id) == []
    # the workers ran each attempt once: their ledgers hold 302 rows, one per (job, attempt)
    rows = ledger_rows(corral.root, task_id)
    assert collections.Counter((r["job"], r["attempt"]) for r in rows) == {
        (j, a): 1 for j in range(300) for a in ((0, 1) if j in (7, 11) else (0,))
    }


def intervals(runs: Path) -> dict[int, list[tuple[float, float]]]:
    """Each run's (start, end) per job, from the files the jobs write (one per run)."""
    found: dict[int, list[tuple[float, float]]] = collections.defaultdict(list)
    for path in runs.glob("*.*"):
        lines = path.read_text().split()
        if len(lines) == 2:
            found[int(path.name.split(".")[0])].append((float(lines[0]), float(lines[1])))
        else:  # killed before its end (no end known)
            found[int(path.name.split(".")[0])].append((float(lines[0]), float("inf")))
    return found


def timed_runs(runs: Path) -> str:
    """A job's shell lines that write its run's start and end times to RUNS/JOB.PID."""
    return f"""
f={runs}/{{{{params.i}}}}.$$
date +%s.%N > $f
sleep 1
date +%s.%N >> $f
"""


def test_a_cancelled_worker_leaves_its_jobs_lost_and_retried(corral, spec_file, pilot_id, slurm, tmp_path):
    task_id = pilot_id("pc")
    runs = tmp_path / "runs"
    runs.mkdir()
    pilot = 'workers: 2, max_workers: 3, cpus: 2, time: "5:00", idle_timeout: 60, silence: 20'
    spec = spec_file(pilot_spec("pc", pilot, timed_runs(runs), 40, top="retries: 2\nretry_backoff: 0.1"))

    def busy_worker() -> str | None:
        busy = (w for w in workers_view(corral.root, task_id) if w["jobs"] > 0 and w["connected"])
        return next((w["worker"] for w in busy), None)

    with launched(corral, spec, task_id) as launcher:
        victim = corral.wait_for(busy_worker, timeout=300, interval=0.2)
        subprocess.run(["scancel", victim], check=True)
        _out, err = launcher.communicate(timeout=600)
    assert launcher.returncode == 0, err

    jobs = job_list(corral, task_id)
    assert all(row["state"] == "SUCCESS" for row in jobs), jobs
    records = raw_records(corral, task_id)
    lost = [r for r in records if r["type"] == "Transition" and r["state"] == "LOST"]
    assert lost, "the cancelled worker's jobs were judged LOST"
    assert all(victim in r["reason"] for r in lost), lost
    lost_jobs = {r["job"] for r in lost}
    retried = {
        job
        for r in records
        if r["type"] == "Submitted" and r["ids"][0] != f"pilot:{victim}"
        for job in r["jobs"]
    }
    assert lost_jobs <= retried
    # never two runs of one job at once: a retry starts after the run before it ended; a run
    # killed with its worker wrote no end, so its retry must start after the LOST judgement,
    # which waited for Slurm's word that the worker's allocation was over
    lost_at = {r["job"]: r["at"] for r in reversed(lost)}
    for job, spans in intervals(runs).items():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= (lost_at[job] if end == float("inf") else end), (job, spans)
    assert alive_workers(slurm, task_id) == []


def running_on_a_worker(corral, task_id: str) -> bool:  # type: ignore[no-untyped-def]
    return any(w["running"] > 0 for w in workers_view(corral.root, task_id))


def test_kill_cancels_the_workers(corral, spec_file, pilot_id, slurm, gate):
    task_id = pilot_id("pk")
    g = gate()
    spec = spec_file(pilot_spec("pk", 'workers: 1, cpus: 2, time: "5:00"', g.cmd, 6))
    with launched(corral, spec, task_id) as launcher:
        corral.wait_for(lambda: running_on_a_worker(corral, task_id), timeout=300, interval=0.2)
        assert alive_workers(slurm, task_id)
        workers = corral.status(task_id)["workers"]  # status --json shows the workers
        assert len(workers) == 1 and workers[0]["host"]
        assert workers[0]["slurm_id"] in alive_workers(slurm, task_id)
        assert "pilot worker" in corral("status", task_id, check=True).stdout
        corral("kill", task_id, check=True)
        launcher.communicate(timeout=120)
    assert corral.status(task_id)["state"] == "KILLED"
    jobs = job_list(corral, task_id)
    # the started jobs were killed on their worker; the others never started
    assert {row["state"] for row in jobs} <= {"KILLED", "PENDING"} and jobs[0]["state"] == "KILLED", jobs
    corral.wait_for(lambda: alive_workers(slurm, task_id) == [], timeout=60, interval=0.5)


def test_a_wrong_token_or_garbage_is_refused(corral, spec_file, pilot_id, slurm, gate):
    """A fake worker: a wrong token is refused; garbage after a right hello drops the stream;
    neither leaves a record in the journal."""
    task_id = pilot_id("pt")
    g = gate()
    spec = spec_file(pilot_spec("pt", 'workers: 1, cpus: 1, time: "5:00"', g.cmd, 1))
    with launched(corral, spec, task_id) as launcher:
        task_dir = corral.root / task_id
        corral.wait_for(lambda: (task_dir / "control.tcp").exists(), timeout=60)
        host, port, token = control_endpoint(task_dir)
        before = len(raw_records(corral, task_id))
        with socket.create_connection((host, port), timeout=30) as s:
            s.sendall(fake_hello("wrong", "999999_0"))
            assert b"wrong or missing token" in s.recv(4096)
        with socket.create_connection((host, port), timeout=30) as s:
            s.sendall(fake_hello(token, "999999_0"))  # the right token, but no worker of ours
            assert b"no worker 999999_0 here" in s.recv(4096)
        with socket.create_connection((host, port), timeout=30) as s:
            s.sendall(b'{"op":"pilot","token":"' + token.encode() + b'","worker":"x"}\n')
            assert b"bad request" in s.recv(4096)
        after = raw_records(corral, task_id)[before:]
        assert not any(r["type"] == "Transition" and r["job"] == 0 and r["state"] == "SUCCESS" for r in after)
        corral("kill", task_id, check=True)
        launcher.communicate(timeout=120)
    assert corral.status(task_id)["state"] == "KILLED"


def test_a_killed_launcher_is_recovered_and_its_workers_report(corral, spec_file, pilot_id, slurm, tmp_path):
    """SIGKILL the launcher while a worker runs jobs; `corral recover` re-attaches: the worker
    reconnects (new port, re-read from control.tcp), reports what ended meanwhile, nothing is
    LOST and no job runs twice."""
    task_id = pilot_id("pr")
    runs = tmp_path / "runs"
    runs.mkdir()
    pilot = 'workers: 1, cpus: 4, time: "5:00", idle_timeout: 60'
    spec = spec_file(pilot_spec("pr", pilot, timed_runs(runs), 30))
    with launched(corral, spec, task_id) as launcher:
        corral.wait_for(lambda: running_on_a_worker(corral, task_id), timeout=300, interval=0.2)
        sigkill_launcher(corral, task_id, launcher)
    result = corral("recover", task_id, timeout=300)
    assert result.returncode == 0, result.stderr
    jobs = job_list(corral, task_id)
    assert all(row["state"] == "SUCCESS" and row["attempts"] == 1 for row in jobs), jobs
    records = raw_records(corral, task_id)
    assert not [r for r in records if r["type"] == "Transition" and r["state"] == "LOST"]
    assert all(len(spans) == 1 for spans in intervals(runs).values())
    assert len(intervals(runs)) == 30
    assert alive_workers(slurm, task_id) == []
