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
from collections.abc import Iterator
from pathlib import Path

import pytest

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


@pytest.fixture
def pilot_ids(slurm: SlurmClient) -> Iterator[list[str]]:
    """Ensemble ids a test runs; their worker jobs still in Slurm are cancelled afterwards."""
    ids: list[str] = []
    yield ids
    for task_id in ids:
        subprocess.run(["scancel", f"--name=corral-pilot-{task_id}"], capture_output=True, check=False)


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
