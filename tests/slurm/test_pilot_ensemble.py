"""Pilot workers through the real CLI against the real local Slurm (scripts/slurm-up.sh).

Each test runs `corral run` on an ensemble with `slurm: {pilot: ...}` and checks the outcome in
`corral status --json`, in the launcher's journal (`corral read --raw --json`), in the workers'
ledgers and in Slurm itself. The worker jobs are named `corral-pilot-ID`; ids carry a random
suffix, so a test only looks at (and cancels) its own worker jobs. The Slurm here is shared by
other work: worker jobs keep short time limits so that backfill starts them.
"""

from __future__ import annotations

import collections
import json
import subprocess
import uuid
from pathlib import Path

from corral.backends.slurm_client import SlurmClient
from corral.core.records import JobsAdded, decode
from corral.journal import read_journal


def new_id(base: str) -> str:
    return f"{base}-{uuid.uuid4().hex[:6]}"


def raw_records(corral, task_id: str) -> list[dict]:
    out = corral("read", task_id, "--raw", "--json", check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def job_list(corral, task_id: str) -> list[dict]:
    out = corral("status", task_id, "--jobs", "--json", check=True).stdout
    return json.loads(out)[0]["job_list"]


def alive_workers(slurm: SlurmClient, task_id: str) -> list[str]:
    infos = slurm.squeue_named(f"corral-pilot-{task_id}")
    return sorted(i.job_id for i in infos.values() if not i.terminal)


def ledger_rows(root: Path, task_id: str) -> list[dict]:
    """Every job a worker took, from the workers' ledgers (their JobsAdded rows)."""
    rows = []
    for journal in sorted((root / task_id / "pilot").glob("*_*/journal")):
        for payload in read_journal(journal).payloads:
            rec = decode(payload)
            if isinstance(rec, JobsAdded):
                rows.extend(dict(row, worker=journal.parent.name) for row in rec.params)
    return rows


def test_pilot_ensemble_runs_jobs_with_retries_and_a_failure(corral, spec_file, pilot_ids, slurm, tmp_path):
    task_id = new_id("pe")
    pilot_ids.append(task_id)
    flags = tmp_path / "flags"
    flags.mkdir()
    spec = spec_file(f"""
name: pe
backend: slurm
slurm:
  poll_interval: 0.5
  pilot: {{workers: 2, cpus: 4, time: "5:00", idle_timeout: 30}}
retries: 1
retry_backoff: 0.1
job:
  cmd: |
    i={{{{params.i}}}}
    echo "job $i attempt {{{{job.attempt}}}}"
    echo "$CORRAL_JOB $CORRAL_TASK_ID" > {flags}/env.$i
    if [ $i -eq 7 ]; then exit 3; fi
    if [ $i -eq 11 ] && [ ! -e {flags}/11 ]; then touch {flags}/11; exit 4; fi
    exit 0
params:
  i: {{range: [0, 300]}}
""")
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


def test_a_cancelled_worker_leaves_its_jobs_lost_and_retried(corral, spec_file, pilot_ids, slurm, tmp_path):
    task_id = new_id("pc")
    pilot_ids.append(task_id)
    runs = tmp_path / "runs"
    runs.mkdir()
    spec = spec_file(f"""
name: pc
backend: slurm
slurm:
  poll_interval: 0.5
  pilot: {{workers: 2, max_workers: 3, cpus: 2, time: "5:00", idle_timeout: 60, silence: 20}}
retries: 2
retry_backoff: 0.1
job:
  cmd: |
    f={runs}/{{{{params.i}}}}.$$
    date +%s.%N > $f
    sleep 1
    date +%s.%N >> $f
params:
  i: {{range: [0, 40]}}
""")
    launcher = corral.start("run", str(spec), "--id", task_id, "-q")
    status = corral.root / task_id / "pilot" / "workers.json"

    def busy_worker() -> str | None:
        try:
            workers = json.loads(status.read_text())["workers"]
        except (OSError, ValueError):
            return None
        return next((w["worker"] for w in workers if w["jobs"] > 0 and w["connected"]), None)

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


def test_kill_cancels_the_workers(corral, spec_file, pilot_ids, slurm, gate):
    task_id = new_id("pk")
    pilot_ids.append(task_id)
    g = gate()
    spec = spec_file(f"""
name: pk
backend: slurm
slurm:
  poll_interval: 0.5
  pilot: {{workers: 1, cpus: 2, time: "5:00"}}
job: {{cmd: "{g.cmd}"}}
params: {{i: {{range: [0, 6]}}}}
""")
    launcher = corral.start("run", str(spec), "--id", task_id, "-q")
    status = corral.root / task_id / "pilot" / "workers.json"

    def running_on_a_worker() -> bool:
        try:
            return any(w["running"] > 0 for w in json.loads(status.read_text())["workers"])
        except (OSError, ValueError):
            return False

    corral.wait_for(running_on_a_worker, timeout=300, interval=0.2)
    assert alive_workers(slurm, task_id)
    workers = corral.status(task_id)["workers"]  # status --json shows the workers
    assert (
        len(workers) == 1 and workers[0]["host"] and workers[0]["slurm_id"] in alive_workers(slurm, task_id)
    )
    assert "pilot worker" in corral("status", task_id, check=True).stdout
    corral("kill", task_id, check=True)
    launcher.communicate(timeout=120)
    assert corral.status(task_id)["state"] == "KILLED"
    jobs = job_list(corral, task_id)
    # the started jobs were killed on their worker; the others never started
    assert {row["state"] for row in jobs} <= {"KILLED", "PENDING"} and jobs[0]["state"] == "KILLED", jobs
    corral.wait_for(lambda: alive_workers(slurm, task_id) == [], timeout=60, interval=0.5)


def test_a_wrong_token_or_garbage_is_refused(corral, spec_file, pilot_ids, slurm, gate):
    """A fake worker: a wrong token is refused; garbage after a right hello drops the stream;
    neither leaves a record in the journal."""
    import socket

    task_id = new_id("pt")
    pilot_ids.append(task_id)
    g = gate()
    spec = spec_file(f"""
name: pt
backend: slurm
slurm:
  poll_interval: 0.5
  pilot: {{workers: 1, cpus: 1, time: "5:00"}}
job: {{cmd: "{g.cmd}"}}
params: {{i: [0]}}
""")
    launcher = corral.start("run", str(spec), "--id", task_id, "-q")
    task_dir = corral.root / task_id
    corral.wait_for(lambda: (task_dir / "control.tcp").exists(), timeout=60)
    host, port = (task_dir / "control.tcp").read_text().strip().removeprefix("tcp://").rsplit(":", 1)
    token = (task_dir / "token").read_text().strip()
    before = len(raw_records(corral, task_id))

    def hello(tok: str) -> bytes:
        return (
            json.dumps(
                {
                    "op": "pilot",
                    "token": tok,
                    "worker": "999999_0",
                    "host": "x",
                    "pid": 1,
                    "cpus": 1,
                    "memory": 0,
                    "ends_at": 1e10,
                    "session": "ab",
                }
            ).encode()
            + b"\n"
        )

    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(hello("wrong"))
        assert b"wrong or missing token" in s.recv(4096)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(hello(token))  # the right token, but no worker of ours
        assert b"no worker 999999_0 here" in s.recv(4096)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b'{"op":"pilot","token":"' + token.encode() + b'","worker":"x"}\n')
        assert b"bad request" in s.recv(4096)
    after = raw_records(corral, task_id)[before:]
    assert not any(r["type"] == "Transition" and r["job"] == 0 and r["state"] == "SUCCESS" for r in after)
    corral("kill", task_id, check=True)
    launcher.communicate(timeout=120)
    assert corral.status(task_id)["state"] == "KILLED"


def test_a_killed_launcher_is_recovered_and_its_workers_report(corral, spec_file, pilot_ids, slurm, tmp_path):
    """SIGKILL the launcher while a worker runs jobs; `corral recover` re-attaches: the worker
    reconnects (new port, re-read from control.tcp), reports what ended meanwhile, nothing is
    LOST and no job runs twice."""
    import os
    import signal

    from corral.journal import lock_holder

    task_id = new_id("pr")
    pilot_ids.append(task_id)
    runs = tmp_path / "runs"
    runs.mkdir()
    spec = spec_file(f"""
name: pr
backend: slurm
slurm:
  poll_interval: 0.5
  pilot: {{workers: 1, cpus: 4, time: "5:00", idle_timeout: 60}}
job:
  cmd: |
    f={runs}/{{{{params.i}}}}.$$
    date +%s.%N > $f
    sleep 1
    date +%s.%N >> $f
params:
  i: {{range: [0, 30]}}
""")
    launcher = corral.start("run", str(spec), "--id", task_id, "-q")
    status = corral.root / task_id / "pilot" / "workers.json"

    def running_on_a_worker() -> bool:
        try:
            return any(w["running"] > 0 for w in json.loads(status.read_text())["workers"])
        except (OSError, ValueError):
            return False

    corral.wait_for(running_on_a_worker, timeout=300, interval=0.2)
    pid = lock_holder(corral.root / task_id / "journal")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    launcher.wait(timeout=60)
    result = corral("recover", task_id, timeout=300)
    assert result.returncode == 0, result.stderr
    jobs = job_list(corral, task_id)
    assert all(row["state"] == "SUCCESS" and row["attempts"] == 1 for row in jobs), jobs
    records = raw_records(corral, task_id)
    assert not [r for r in records if r["type"] == "Transition" and r["state"] == "LOST"]
    assert all(len(spans) == 1 for spans in intervals(runs).values())
    assert len(intervals(runs)) == 30
    assert alive_workers(slurm, task_id) == []
