"""Pilot workers' scheduling against the real local Slurm: walltime left, placement, idle
workers leaving and coming back with demand, a gone worker's ledger.

Helpers in slurm_helpers.py (worker jobs named corral-pilot-ID, each test cancels only its
own, through conftest's pilot_id). Waits are on files, the launcher's workers.json and squeue,
with generous deadlines; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import subprocess
import time

from slurm_helpers import (
    alive_workers,
    handed_to,
    held_workers,
    job_list,
    launched,
    pilot_spec,
    raw_records,
    sigkill_launcher,
    workers_view,
)


def test_a_worker_takes_no_job_whose_walltime_outlasts_its_allocation(
    corral, spec_file, pilot_id, slurm, gate
):
    """The worker asks for 10 minutes, but its limit is cut to 2 while it waits in the queue:
    it counts what is left from Slurm's own limit. A job declaring 100 s fits while more than
    105 s are left (the margin is 5 s); the same job submitted once less is left goes to no
    worker until a new one (with its full 10 minutes) starts."""
    task_id = pilot_id("pw")
    g = gate()  # job 0 keeps the ensemble open until job 1 was submitted
    pilot = 'workers: 1, max_workers: 1, cpus: 2, time: "10:00", idle_timeout: 300'
    cmd = f"if [ {{{{params.i}}}} -eq 0 ]; then {g.cmd}; fi"
    spec = spec_file(
        pilot_spec("pw", pilot, cmd, 1, slurm='extra: ["--hold"]', job="resources: {walltime: 100}")
    )
    with launched(corral, spec, task_id) as launcher:
        (array,) = corral.wait_for(lambda: held_workers(slurm, task_id), timeout=120, interval=0.2)
        subprocess.run(["scontrol", "update", f"JobId={array}", "TimeLimit=2"], check=True)
        subprocess.run(["scontrol", "release", array], check=True)
        (worker,) = corral.wait_for(
            lambda: [w for w in workers_view(corral.root, task_id) if w["connected"]], timeout=300
        )
        left = worker["ends_at"] - time.time()
        assert 60 < left <= 120, worker  # not 10 minutes from the worker's start
        corral.wait_for(lambda: handed_to(corral, task_id).get(0), timeout=60, interval=0.2)
        assert handed_to(corral, task_id)[0] == [worker["worker"]]

        # once less than 100 + 5 s are left (by the worker's end as Slurm holds it), a new job
        # declaring 100 s is not handed to it
        corral.wait_for(lambda: worker["ends_at"] - time.time() < 102, timeout=120, interval=0.5)
        corral("submit", "--ensemble", task_id, "--set", "i=1", check=True)
        corral.wait_for(lambda: len(job_list(corral, task_id)) == 2, timeout=60, interval=0.2)
        g.release()
        # it waits for another worker, which starts (held too: released here) once the first
        # one's allocation ended
        (array2,) = corral.wait_for(
            lambda: [a for a in held_workers(slurm, task_id) if a != array], timeout=300, interval=0.5
        )
        assert 1 not in handed_to(corral, task_id)
        subprocess.run(["scontrol", "release", array2], check=True)
        corral.wait_for(lambda: handed_to(corral, task_id).get(1), timeout=300, interval=0.5)
        (second,) = handed_to(corral, task_id)[1]
        assert second != worker["worker"] and second.startswith(array2 + "_")
        _, err = launcher.communicate(timeout=300)  # the ensemble ends by itself
    assert launcher.returncode == 0, err
    jobs = {row["job"]: row for row in job_list(corral, task_id)}
    assert jobs[0]["state"] == jobs[1]["state"] == "SUCCESS", jobs


def test_a_gone_workers_ledger_gives_the_ends_it_could_not_report(corral, spec_file, pilot_id, slurm, gate):
    """The launcher is SIGKILLed while a worker runs 4 jobs; they end while the worker is cut
    off, and the worker, idle and cut off, leaves (its Slurm job ends). The recovered launcher
    judges it gone and reads its ledger: the 4 jobs end SUCCESS (not LOST, not run again); the
    garbage and a job it never held, written into the ledger, are ignored and counted."""
    task_id = pilot_id("pl")
    g = gate()
    spec = spec_file(pilot_spec("pl", 'workers: 1, cpus: 4, time: "5:00", idle_timeout: 5', g.cmd, 4))
    with launched(corral, spec, task_id) as launcher:
        (worker,) = corral.wait_for(
            lambda: [w for w in workers_view(corral.root, task_id) if w["running"] == 4],
            timeout=300,
            interval=0.2,
        )
        sigkill_launcher(corral, task_id, launcher)
    g.release()  # the 4 jobs end while their worker is cut off
    ledger = corral.root / task_id / "pilot" / worker["worker"] / "ends"
    corral.wait_for(lambda: ledger.exists() and ledger.read_bytes().count(b"\n") == 4, timeout=120)
    corral.wait_for(lambda: alive_workers(slurm, task_id) == [], timeout=180, interval=0.5)
    with ledger.open("ab") as f:
        f.write(b"garbage\n\x00\xff\n")
        f.write(b'{"m":"end","seq":9,"job":99,"attempt":0,"at":1.0,"state":"SUCCESS"}\n')

    result = corral("recover", task_id, timeout=300)
    assert result.returncode == 0, result.stderr
    jobs = job_list(corral, task_id)
    assert len(jobs) == 4
    assert all(row["state"] == "SUCCESS" and row["attempts"] == 1 for row in jobs), jobs
    records = raw_records(corral, task_id)
    assert not [r for r in records if r["type"] == "Transition" and r["state"] == "LOST"]
    notes = [r["text"] for r in records if r["type"] == "Note" and "ledger" in r["text"]]
    assert notes == [
        f"pilot: worker {worker['worker']} gone: 4 ends read from its ledger, 2 lines ignored as "
        "garbage, 1 as ends of jobs it did not hold"
    ], notes


def test_short_jobs_go_to_the_idle_worker_not_behind_a_long_job(corral, spec_file, pilot_id, slurm, gate):
    """Two single-CPU workers, one long job (gated) and 12 short ones: while the long job runs,
    every short job is handed to the other worker (none waits behind the long one), and the
    long job's worker gets no job until its slot frees."""
    task_id = pilot_id("pp")
    g = gate()
    cmd = f"if [ {{{{params.i}}}} -eq 0 ]; then {g.cmd}; fi"
    spec = spec_file(pilot_spec("pp", 'workers: 2, cpus: 1, time: "5:00", idle_timeout: 60', cmd, 13))
    with launched(corral, spec, task_id) as launcher:

        def shorts_done() -> bool:
            if corral.view(task_id) is None:
                return False  # the launcher has not opened its journal yet
            jobs = job_list(corral, task_id)
            return len(jobs) == 13 and all(r["state"] == "SUCCESS" for r in jobs if r["job"] != 0)

        corral.wait_for(shorts_done, timeout=300, interval=0.5)
        handed = handed_to(corral, task_id)
        (long_worker,) = handed[0]
        assert {j: w for j, w in handed.items() if long_worker in w} == {0: [long_worker]}, handed
        g.release()
        result = launcher.communicate(timeout=120)
    assert launcher.returncode == 0, result
    assert all(r["state"] == "SUCCESS" for r in job_list(corral, task_id))


def test_idle_workers_leave_and_new_jobs_bring_a_new_one(corral, spec_file, pilot_id, slurm, gate, tmp_path):
    """Two workers run the first jobs; the one left idle leaves after idle_timeout (its Slurm
    job ends by itself, status lists it no more) while job 0 (gated) keeps the other busy. Jobs
    submitted afterwards bring a new worker (demand), which runs them."""
    task_id = pilot_id("pi")
    g = gate()
    cmd = f"if [ {{{{params.i}}}} -eq 0 ]; then {g.cmd}; fi"
    spec = spec_file(pilot_spec("pi", 'workers: 2, cpus: 1, time: "5:00", idle_timeout: 3', cmd, 4))
    with launched(corral, spec, task_id) as launcher:

        def done(count: int) -> bool:
            if corral.view(task_id) is None:
                return False
            jobs = job_list(corral, task_id)
            return len(jobs) == count and all(r["state"] == "SUCCESS" for r in jobs if r["job"] != 0)

        corral.wait_for(lambda: done(4), timeout=300, interval=0.5)
        handed = handed_to(corral, task_id)
        (busy,) = handed[0]
        first = {w for ws in handed.values() for w in ws}
        assert len(first) == 2, handed  # both workers took jobs
        (idle,) = first - {busy}

        def idle_left() -> bool:
            listed = {w["worker"] for w in corral.status(task_id).get("workers", [])}
            return idle not in listed and idle not in alive_workers(slurm, task_id)

        corral.wait_for(idle_left, timeout=180, interval=0.5)
        assert busy in alive_workers(slurm, task_id)
        records = raw_records(corral, task_id)
        assert not [r for r in records if r["type"] == "Transition" and r["state"] == "LOST"]

        more = tmp_path / "more.jsonl"
        more.write_text('{"i": 4}\n{"i": 5}\n')
        corral("submit", "--ensemble", task_id, "--jsonl", str(more), check=True)
        corral.wait_for(lambda: done(6), timeout=300, interval=0.5)
        handed = handed_to(corral, task_id)
        new = {w for j in (4, 5) for w in handed[j]}
        assert new and not new & first, handed  # a new worker, submitted for them
        g.release()
        _, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 0, err
    corral.wait_for(lambda: alive_workers(slurm, task_id) == [], timeout=60, interval=0.5)


def test_a_job_prefetched_behind_long_ones_moves_to_an_idle_worker(
    corral, spec_file, pilot_id, slurm, gate, tmp_path
):
    """The first worker (4 CPUs) takes 4 long jobs (gated) and prefetches job 4 behind them; a
    second worker, started for the jobs still waiting, has free slots: job 4 (older than the
    jobs waiting in the launcher) is asked back from the first worker (where it never started)
    and runs on the second, once, while the long jobs still run. Every hand-over is in the
    journal."""
    task_id = pilot_id("pm")
    g = gate()
    runs = tmp_path / "runs"
    runs.mkdir()
    pilot = 'workers: 1, max_workers: 2, cpus: 4, time: "5:00", idle_timeout: 60'
    cmd = f"echo $SLURM_JOB_ID >> {runs}/{{{{params.i}}}}; if [ {{{{params.i}}}} -lt 4 ]; then {g.cmd}; fi"
    spec = spec_file(pilot_spec("pm", pilot, cmd, 13))
    with launched(corral, spec, task_id) as launcher:

        def shorts_done() -> bool:
            if corral.view(task_id) is None:
                return False
            jobs = job_list(corral, task_id)
            return len(jobs) == 13 and all(r["state"] == "SUCCESS" for r in jobs if r["job"] >= 4)

        corral.wait_for(shorts_done, timeout=300, interval=0.5)
        handed = handed_to(corral, task_id)
        (first,) = {w for j in range(4) for w in handed[j]}
        assert handed[4][0] == first and len(handed[4]) == 2 and handed[4][1] != first, handed
        # a newer job prefetched by the first worker once job 4 left it was asked back too
        assert all(handed[j][-1] != first for j in range(4, 13)), handed
        for j in range(4, 13):
            assert (runs / str(j)).read_text().count("\n") == 1  # each ran once
        g.release()
        _, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 0, err
    assert all(r["state"] == "SUCCESS" and r["attempts"] == 1 for r in job_list(corral, task_id))
