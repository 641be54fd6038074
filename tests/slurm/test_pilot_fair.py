"""Pilot workers against the real local Slurm: the order jobs get free slots in (a job
prefetched behind long ones does not starve while newer jobs stream through another worker)
and the launcher's re-check of its workers' time left (a limit cut while a worker runs).

Helpers in slurm_helpers.py (worker jobs named corral-pilot-ID, each test cancels only its
own, through conftest's pilot_id). Waits are on the launcher's journal,
workers.json and squeue, with generous deadlines; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import math
import subprocess
import time

from slurm_helpers import handed_to, job_list, launched, pilot_spec, raw_records, workers_view


def test_a_prefetched_job_does_not_wait_for_the_long_job_while_newer_ones_stream_past(
    corral, spec_file, pilot_id, slurm, gate, tmp_path
):
    """The first worker (4 CPUs) runs 4 long jobs (gated) and holds job 4, prefetched behind
    them. A second worker starts for the 120 short jobs that follow (a stream: the launcher's
    queue stays full while they run). Job 4 is older than all of them: it is asked back at the
    second worker's first free slot and runs there, once, while the long jobs still run and
    most of the stream still waits (before: only once the launcher's queue was empty)."""
    task_id = pilot_id("pf")
    g = gate()
    runs = tmp_path / "runs"
    runs.mkdir()
    stream = 120
    pilot = 'workers: 1, max_workers: 2, cpus: 4, time: "5:00", idle_timeout: 60'
    cmd = f"echo $SLURM_JOB_ID >> {runs}/{{{{params.i}}}}; if [ {{{{params.i}}}} -lt 4 ]; then {g.cmd}; else sleep 0.5; fi"
    spec = spec_file(pilot_spec("pf", pilot, cmd, 5 + stream))
    with launched(corral, spec, task_id) as launcher:

        def job4_done() -> bool:
            if corral.view(task_id) is None:
                return False
            return any(r["job"] == 4 and r["state"] == "SUCCESS" for r in job_list(corral, task_id))

        corral.wait_for(job4_done, timeout=300, interval=0.5)
        records = raw_records(corral, task_id)
        started = next(
            i
            for i, r in enumerate(records)
            if r["type"] == "Transition" and r["job"] == 4 and r["state"] == "ACTIVE"
        )
        before = {job for r in records[:started] if r["type"] == "Submitted" for job in r["jobs"] if job >= 5}
        assert len(before) < stream // 2, (len(before), sorted(before))
        handed = handed_to(corral, task_id)
        (first,) = {w for j in range(4) for w in handed[j]}
        assert handed[4][0] == first and handed[4][-1] != first, handed[4]
        assert all(r["state"] == "ACTIVE" for r in job_list(corral, task_id) if r["job"] < 4)
        g.release()
        _, err = launcher.communicate(timeout=300)
    assert launcher.returncode == 0, err
    jobs = job_list(corral, task_id)
    assert len(jobs) == 5 + stream
    assert all(r["state"] == "SUCCESS" and r["attempts"] == 1 for r in jobs), jobs
    for j in range(5 + stream):
        assert (runs / str(j)).read_text().count("\n") == 1, j  # none ran twice


def test_a_worker_whose_time_limit_is_cut_while_it_runs_gets_no_job_that_would_outlast_it(
    corral, spec_file, pilot_id, slurm, gate
):
    """A worker (10 minutes) runs job 0 (gated); its Slurm time limit is cut while it runs
    (`scontrol update TimeLimit=`) to leave it 60-120 s. The launcher asks Slurm for its
    workers' time left again (every second here: CORRAL_PILOT_LEFT_EVERY, internal) and sees
    the new end: job 1, declaring a walltime of 150 s, is not handed to it although it has a
    free slot, but to a second worker started for it; nothing is LOST."""
    task_id = pilot_id("pt")
    g = gate()  # job 0 keeps the first worker busy and the ensemble open
    pilot = 'workers: 1, max_workers: 2, cpus: 2, time: "10:00", idle_timeout: 300'
    cmd = f"if [ {{{{params.i}}}} -eq 0 ]; then {g.cmd}; fi"
    spec = spec_file(pilot_spec("pt", pilot, cmd, 1, job="resources: {walltime: 150}"))
    with launched(corral, spec, task_id, env={"CORRAL_PILOT_LEFT_EVERY": "1"}) as launcher:
        (worker,) = corral.wait_for(
            lambda: [w for w in workers_view(corral.root, task_id) if w["connected"]], timeout=300
        )
        name = worker["worker"]
        corral.wait_for(lambda: handed_to(corral, task_id).get(0), timeout=60, interval=0.2)
        assert worker["ends_at"] - time.time() > 155  # job 0 (150 s) fitted
        left = corral.wait_for(lambda: slurm.time_left([name]).get(name), timeout=60, interval=0.5)
        minutes = math.ceil((600 - left + 60) / 60)  # 60 to 120 s left once cut
        subprocess.run(["scontrol", "update", f"JobId={name}", f"TimeLimit={minutes}"], check=True)

        def cut_seen() -> bool:
            view = [w for w in workers_view(corral.root, task_id) if w["worker"] == name]
            return bool(view) and view[0]["ends_at"] - time.time() < 150

        corral.wait_for(cut_seen, timeout=120, interval=0.5)
        corral("submit", "--ensemble", task_id, "--set", "i=1", check=True)
        (to,) = corral.wait_for(lambda: handed_to(corral, task_id).get(1), timeout=300, interval=0.5)
        assert to != name, handed_to(corral, task_id)
        g.release()
        _, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 0, err
    jobs = job_list(corral, task_id)
    assert [(r["job"], r["state"], r["attempts"]) for r in jobs] == [(0, "SUCCESS", 1), (1, "SUCCESS", 1)]
    records = raw_records(corral, task_id)
    assert not [r for r in records if r["type"] == "Transition" and r["state"] == "LOST"]


def test_a_bad_left_every_is_refused_before_anything_is_recorded(corral, spec_file, pilot_id, monkeypatch):
    task_id = pilot_id("pb")
    spec = spec_file("""
name: pb
backend: slurm
slurm: {pilot: {workers: 1, cpus: 1, time: "1:00"}}
job: {cmd: "true"}
params: {i: [0]}
""")
    monkeypatch.setitem(corral.env, "CORRAL_PILOT_LEFT_EVERY", "soon")
    result = corral("run", str(spec), "--id", task_id, "-q")
    assert result.returncode == 2, result
    (line,) = result.stderr.strip().splitlines()
    assert "CORRAL_PILOT_LEFT_EVERY='soon'" in line and "Traceback" not in result.stderr
    assert not (corral.root / task_id / "journal").exists()
