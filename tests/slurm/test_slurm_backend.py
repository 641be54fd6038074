"""The Slurm backend through the real CLI, against the real local Slurm (scripts/slurm-up.sh).

Every test runs `corral` as a user would, with `backend: slurm` (or `slurm-steps`) in the spec,
and checks the outcome in `corral status --json`, in the journal (`corral read --raw --json`)
and in Slurm itself (squeue). Ids carry a random suffix: the Slurm job name is `corral-ID`,
so a test only ever looks at (and cancels) its own jobs.

The time-limit test needs Slurm's 1-minute minimum plus its ~30 s enforcement tick; its
ensemble starts when the module starts (see `timeout_run`) so it runs while the others do.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from slurm_helpers import job_list, new_id, raw_records

from corral.backends.slurm_client import SlurmClient
from corral.backends.slurm_states import SlurmState

POLL = "slurm: {poll_interval: 0.5}"
TIMEOUT_TEST = "test_time_limit_maps_to_timeout_and_is_retried"


def submitted(records: list[dict]) -> list[dict]:
    return [r for r in records if r["type"] == "Submitted"]


def submissions_per_job(records: list[dict]) -> collections.Counter[int]:
    return collections.Counter(job for r in submitted(records) for job in r["jobs"])


def command_counts(records: list[dict]) -> dict[str, int]:
    """The launcher's last 'slurm commands: sbatch=1 squeue=40' note."""
    notes = [r["text"] for r in records if r["type"] == "Note" and r["text"].startswith("slurm commands:")]
    assert notes, "the backend notes its Slurm command counts when no job is live"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", notes[-1])}


def transitions(records: list[dict], job: int) -> list[dict]:
    return [r for r in records if r["type"] == "Transition" and r["job"] == job]


def marked(root: Path) -> list[psutil.Process]:
    """Processes started for this test root (they carry CORRAL_ROOT=root in their environment)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("CORRAL_ROOT") == str(root) and p.pid != os.getpid():
                found.append(p)
        except (psutil.Error, OSError):
            pass
    return found


@pytest.fixture
def slurm_ids(slurm: SlurmClient) -> Iterator[list[str]]:
    """Ids a test runs; whatever Slurm still has of them is cancelled afterwards."""
    ids: list[str] = []
    yield ids
    for task_id in ids:
        subprocess.run(["scancel", f"--name=corral-{task_id}"], capture_output=True, check=False)


# -- the time limit: started first, checked last ----------------------------------------------


@dataclass
class TimeoutRun:
    root: Path
    task_id: str
    marker: Path
    launcher: subprocess.Popen[str]


@pytest.fixture(scope="module", autouse=True)
def timeout_run(request, tmp_path_factory) -> Iterator[TimeoutRun | None]:
    """Start the slow time-limit ensemble before the other tests (only if its test is selected)."""
    if not any(item.name == TIMEOUT_TEST for item in request.session.items):
        yield None
        return
    request.getfixturevalue("slurm")  # skip (or fail) like the rest without a cluster
    base = tmp_path_factory.mktemp("timeout")
    root = base / "root"
    root.mkdir()
    marker = base / "first-attempt"
    spec = base / "spec.yaml"
    spec.write_text(f"""
name: to
backend: slurm
slurm: {{poll_interval: 0.5, time: 60}}
job:
  cmd: 'if [ -e {marker} ]; then echo second attempt; else touch {marker}; sleep 300; fi'
params:
  i: [0]
retries: 1
retry_backoff: 0.1
""")
    task_id = new_id("to")
    env = dict(os.environ, CORRAL_ROOT=str(root), PYTHONUNBUFFERED="1")
    env.pop("CORRAL_TASK_ID", None)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "corral", "--root", str(root), "run", str(spec), "--id", task_id, "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    yield TimeoutRun(root, task_id, marker, launcher)
    if launcher.poll() is None:
        launcher.kill()
        launcher.wait()
    subprocess.run(["scancel", f"--name=corral-{task_id}"], capture_output=True, check=False)
    for p in marked(root):
        p.kill()


# -- ensembles ---------------------------------------------------------------------------------


def expected_exit(i: int) -> int:
    return i % 5 + 1 if i % 7 == 3 else 0


def test_ensemble_of_200_jobs_with_exit_codes(corral, spec_file, slurm_ids, slurm):
    task_id = new_id("e200")
    slurm_ids.append(task_id)
    spec = spec_file(f"""
name: e200
backend: slurm
{POLL}
job:
  cmd: |
    i={{{{params.i}}}}
    echo "job $i on $SLURM_JOB_ID"
    exit $(( i % 7 == 3 ? i % 5 + 1 : 0 ))
params:
  i: {{range: [0, 200]}}
""")
    result = corral("run", str(spec), "--id", task_id, "-q", timeout=300)
    assert result.returncode == 1, result.stderr  # some jobs fail on purpose

    jobs = job_list(corral, task_id)
    assert len(jobs) == 200
    for row in jobs:
        code = expected_exit(row["params"]["i"])
        assert row["exit_code"] == code, row
        assert row["state"] == ("SUCCESS" if code == 0 else "FAILED"), row
        assert row["attempts"] == 1, row
    assert sum(expected_exit(i) != 0 for i in range(200)) == 29  # the test itself is sound

    records = raw_records(corral, task_id)
    subs = submitted(records)
    assert len(subs) == 1, "200 identical jobs are one job array: one sbatch"
    assert sorted(subs[0]["jobs"]) == list(range(200))
    assert submissions_per_job(records) == {j: 1 for j in range(200)}
    counts = command_counts(records)
    assert counts["sbatch"] == 1
    # one squeue per poll interval, whatever the number of jobs
    opened = records[0]["at"]
    ended = next(
        r["at"] for r in records if r["type"] == "Transition" and r["job"] == -1 and r["state"] == "FAILED"
    )
    assert 1 <= counts["squeue"] <= (ended - opened) / 0.5 + 2, (counts, ended - opened)
    # each job ran in its own Slurm array task, which its log shows
    array_id = subs[0]["backend_id"]
    out = corral("tail", task_id, "42", check=True).stdout
    assert out.strip() == f"job 42 on {slurm.squeue([f'{array_id}_42'])[f'{array_id}_42'].raw_job_id}"


def test_failing_job_is_retried(corral, spec_file, slurm_ids, tmp_path):
    task_id = new_id("rt")
    slurm_ids.append(task_id)
    spec = spec_file(f"""
name: rt
backend: slurm
{POLL}
job:
  cmd: |
    m={tmp_path}/m{{{{params.i}}}}
    if [ -e $m ]; then echo ok; else touch $m; exit 9; fi
params:
  i: [0, 1]
retries: 1
retry_backoff: 0.1
""")
    result = corral("run", str(spec), "--id", task_id, "-q")
    assert result.returncode == 0, result.stderr
    jobs = job_list(corral, task_id)
    assert [(j["state"], j["attempts"], j["exit_code"]) for j in jobs] == [("SUCCESS", 2, 0)] * 2
    records = raw_records(corral, task_id)
    for job in (0, 1):
        ends = [
            (t["state"], t["attempt"], t["exit_code"])
            for t in transitions(records, job)
            if t["state"] in ("SUCCESS", "FAILED")
        ]
        assert ends == [("FAILED", 0, 9), ("SUCCESS", 1, 0)]
    # the retry is a new Slurm job: two submissions per job, with different ids
    assert submissions_per_job(records) == {0: 2, 1: 2}
    ids = [r["ids"][r["jobs"].index(0)] for r in submitted(records) if 0 in r["jobs"]]
    assert len(set(ids)) == 2


def cluster_cpus() -> int:
    """CPUs the cluster advertises (sinfo %C is allocated/idle/other/total)."""
    out = subprocess.run(["sinfo", "-h", "-o", "%C"], capture_output=True, text=True, check=True).stdout
    return sum(int(line.split("/")[3]) for line in out.split())


def test_kill_cancels_the_slurm_jobs(corral, spec_file, slurm_ids, slurm):
    task_id = new_id("kl")
    slurm_ids.append(task_id)
    n = cluster_cpus() + 8  # more jobs than CPUs: some run, some wait in the queue
    spec = spec_file(f"""
name: kl
backend: slurm
{POLL}
job:
  cmd: 'echo started; sleep 300'
params:
  i: {{range: [0, {n}]}}
""")
    launcher = corral.start("run", str(spec), "--id", task_id)

    def array_running() -> str | None:
        if not (corral.root / task_id / "journal").exists():
            return None
        subs = submitted(raw_records(corral, task_id))
        if not subs:
            return None
        infos = slurm.squeue([subs[0]["backend_id"]])
        return subs[0]["backend_id"] if any(i.state is SlurmState.RUNNING for i in infos.values()) else None

    array_id = corral.wait_for(array_running, timeout=60, interval=0.3)
    before = {k: v.state for k, v in slurm.squeue([array_id]).items()}
    assert SlurmState.PENDING in before.values(), "some jobs still wait in the queue"

    result = corral("kill", task_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{task_id}: KILLED"
    assert launcher.wait(timeout=30) == 3

    view = corral.status(task_id)
    assert view["state"] == "KILLED"
    assert view["jobs"]["killed"] == n, view["jobs"]
    # nothing is left in Slurm: every task of the array is CANCELLED
    after = slurm.squeue([array_id])
    assert after and all(i.state is SlurmState.CANCELLED for i in after.values()), after
    records = raw_records(corral, task_id)
    assert command_counts(records)["scancel"] == 1, "one scancel for all jobs"
    reasons = [t["reason"] for j in range(n) for t in transitions(records, j) if t["state"] == "KILLED"]
    assert reasons == ["cancelled"] * n
    # and Slurm took the processes down with the jobs
    corral.wait_for(lambda: not [p for p in marked(corral.root) if "sleep" in p.name()], timeout=30)


def test_task_graph_with_finalizer_runs_on_the_node(corral, spec_file, slurm_ids):
    task_id = new_id("fz")
    slurm_ids.append(task_id)
    spec = spec_file(f"""
name: fz
backend: slurm
{POLL}
job:
  processes:
    - name: setup
      cmd: 'echo "setup {{{{params.i}}}}" > setup.txt'
    - name: main
      cmd: 'cat setup.txt > main.txt; echo "main on $SLURM_JOB_ID" >> main.txt; exit {{{{params.code}}}}'
      after: [setup]
    - name: fin
      cmd: 'echo "final after $(head -1 main.txt)" > final.txt'
      final: true
params:
  i: [0, 1]
  code: [0]
""")
    assert corral("run", str(spec), "--id", task_id, "-q").returncode == 0
    for job in (0, 1):
        jdir = corral.root / task_id / "jobs" / str(job)
        assert (jdir / "setup.txt").read_text() == f"setup {job}\n"
        main = (jdir / "main.txt").read_text().splitlines()
        assert main[0] == f"setup {job}" and re.fullmatch(r"main on \d+", main[1]), main
        assert (jdir / "final.txt").read_text() == f"final after setup {job}\n"
    # logs of each process, in the node's own journal directory, reachable with tail
    assert corral("tail", task_id, "1", "fin", check=True).stdout == ""
    node_journals = list((corral.root / task_id / "slurm" / "1").glob("*_1/journal"))
    assert len(node_journals) == 1


def test_finalizer_runs_when_the_main_process_fails(corral, spec_file, slurm_ids):
    task_id = new_id("ff")
    slurm_ids.append(task_id)
    spec = spec_file(f"""
name: ff
backend: slurm
{POLL}
processes:
  - name: main
    cmd: 'echo working > main.txt; exit 7'
  - name: fin
    cmd: 'echo "cleaned after $(cat main.txt)" > final.txt'
    final: true
""")
    result = corral("run", str(spec), "--id", task_id, "-q")
    assert result.returncode == 1
    assert corral.status(task_id)["state"] == "FAILED"
    sandbox = corral.root / task_id / "sandbox"
    assert (sandbox / "final.txt").read_text() == "cleaned after working\n"
    ends = [t for t in transitions(raw_records(corral, task_id), 0) if t["state"] == "FAILED"]
    # (its exit code is the last run's, the finalizer's 0, as for a local job)
    assert [t["reason"] for t in ends] == ["slurm FAILED"]


# -- recovery ----------------------------------------------------------------------------------


def test_recover_after_the_launcher_is_killed(corral, spec_file, slurm_ids, tmp_path):
    task_id = new_id("rc")
    slurm_ids.append(task_id)
    ledger = tmp_path / "ledger"
    ledger.touch()
    spec = spec_file(f"""
name: rc
backend: slurm
{POLL}
job:
  cmd: 'echo "start {{{{job.index}}}}" >> {ledger}; sleep 1; echo "end {{{{job.index}}}}" >> {ledger}'
params:
  i: {{range: [0, 30]}}
job_limit: 8
""")
    launcher = corral.start("run", str(spec), "--id", task_id)
    corral.wait_for(lambda: ledger.read_text().count("end") >= 10, timeout=90)
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()
    at_kill = corral.status(task_id)["jobs"]
    assert at_kill["running"] > 0 and at_kill["pending"] > 0, at_kill
    records_at_kill = raw_records(corral, task_id)
    submitted_at_kill = set(submissions_per_job(records_at_kill))
    last = {r["job"]: r["state"] for r in records_at_kill if r["type"] == "Transition" and r["job"] >= 0}
    in_slurm = {j for j, s in last.items() if s in ("SUBMITTED", "ACTIVE") and j in submitted_at_kill}
    assert in_slurm

    result = corral("recover", task_id, timeout=180)
    assert result.returncode == 0, result.stderr
    # the jobs live in Slurm are what the new launcher re-attached to (it said 0 before)
    assert f"{len(in_slurm)} re-attached" in result.stdout + result.stderr, (result.stdout, result.stderr)
    assert corral.status(task_id)["jobs"]["succeeded"] == 30

    starts = collections.Counter(
        int(line.split()[1]) for line in ledger.read_text().splitlines() if line.startswith("start")
    )
    assert sorted(starts) == list(range(30))
    assert set(starts.values()) == {1}, "no job ran twice"
    records = raw_records(corral, task_id)
    per_job = submissions_per_job(records)
    assert per_job == {j: 1 for j in range(30)}, "no job was submitted twice"
    # the recovering launcher re-attached to the jobs already in Slurm and submitted the rest
    recovered_at = next(i for i, r in enumerate(records) if r["type"] == "Attached" and r["recovered"])
    after = {j for r in submitted(records[recovered_at:]) for j in r["jobs"]}
    assert after and not after & submitted_at_kill


@pytest.mark.parametrize(
    ("crash", "found"),
    [("commit:2", 12), ("submit:1", 0)],
    ids=["after-sbatch-before-its-record", "before-sbatch"],
)
def test_recover_a_crash_around_sbatch(corral, spec_file, slurm_ids, tmp_path, crash, found):
    """The journal says SUBMITTED but holds no Slurm id: the jobs are looked up by name."""
    task_id = new_id("cs")
    slurm_ids.append(task_id)
    ledger = tmp_path / "ledger"
    spec = spec_file(f"""
name: cs
backend: slurm
{POLL}
job:
  cmd: 'echo "start {{{{job.index}}}}" >> {ledger}'
params:
  i: {{range: [0, 12]}}
""")
    launcher = corral.start("run", str(spec), "--id", task_id, env={"CORRAL_CRASH": crash})
    assert launcher.wait(timeout=60) == -signal.SIGKILL
    records = raw_records(corral, task_id)
    assert not submitted(records)
    assert sum(1 for r in records if r["type"] == "Transition" and r["state"] == "SUBMITTED") == 12

    result = corral("recover", task_id, timeout=120)
    assert result.returncode == 0, result.stderr
    assert corral.status(task_id)["jobs"]["succeeded"] == 12
    records = raw_records(corral, task_id)
    assert submissions_per_job(records) == {j: 1 for j in range(12)}
    assert f"slurm: {found} submitted jobs found by name, {12 - found} never submitted" in [
        r["text"] for r in records if r["type"] == "Note"
    ]
    starts = collections.Counter(ledger.read_text().split())
    assert starts["start"] == 12 and sorted(int(w) for w in starts if w != "start") == list(range(12))


# -- plain tasks, bad input, allocations -------------------------------------------------------


def test_plain_task_on_slurm(corral, spec_file, slurm_ids):
    task_id = new_id("pt")
    slurm_ids.append(task_id)
    spec = spec_file(f"""
name: pt
backend: slurm
{POLL}
processes:
  - name: hello
    cmd: 'echo "job=$SLURM_JOB_ID"; pwd'
""")
    result = corral("run", str(spec), "--id", task_id)
    assert result.returncode == 0, result.stderr
    view = corral.status(task_id)
    assert view["state"] == "SUCCESS"
    # the process table is the node's (it stayed WAITING before): from status.json, and replayed
    runs = [(p["name"], r["state"], r["exit_code"]) for p in view["processes"] for r in p["runs"]]
    assert runs == [("hello", "SUCCESS", 0)], view["processes"]
    (corral.root / task_id / "status.json").unlink()
    assert corral.status(task_id)["processes"] == view["processes"]
    records = raw_records(corral, task_id)
    subs = submitted(records)
    assert len(subs) == 1 and subs[0]["jobs"] == [0]
    states = [t["state"] for t in transitions(records, 0)]
    assert states[0] == "SUBMITTED" and states[-1] == "SUCCESS"
    out = corral("tail", task_id, check=True).stdout.splitlines()
    assert re.fullmatch(r"job=\d+", out[0]), out
    assert out[1] == str(corral.root / task_id / "sandbox")  # where a local task runs


def test_unknown_partition_fails_at_run_with_slurms_message(corral, spec_file, slurm):
    task_id = new_id("np")
    spec = spec_file("""
name: np
backend: slurm
slurm: {partition: no-such-partition}
job:
  cmd: 'true'
params:
  i: [0, 1]
""")
    before = slurm.squeue_named(f"corral-{task_id}")
    result = corral("run", str(spec), "--id", task_id)
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, result.stderr
    assert line.startswith(f"corral: {spec}: slurm: sbatch refused the job:"), line
    assert "invalid partition specified: no-such-partition" in line  # Slurm's own words
    assert not (corral.root / task_id / "journal").exists()
    assert task_id not in corral("status", "--json", check=True).stdout
    assert before == {} and slurm.squeue_named(f"corral-{task_id}") == {}


def test_slurm_steps_task_inside_salloc(corral, spec_file):
    task_id = new_id("sa")
    spec = spec_file("""
name: sa
backend: slurm-steps
processes:
  - name: a
    cmd: 'echo "step=$SLURM_STEP_ID job=$SLURM_JOB_ID"'
  - name: b
    cmd: 'echo "step=$SLURM_STEP_ID job=$SLURM_JOB_ID"'
""")
    result = subprocess.run(
        [
            "salloc",
            "-N1",
            "-n2",
            "--job-name",
            f"corral-test-{task_id}",
            *corral.argv("run", str(spec), "--id", task_id),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=corral.env,
    )
    assert result.returncode == 0, result.stderr
    alloc = re.search(r"Granted job allocation (\d+)", result.stderr)
    assert alloc, result.stderr
    outs = [corral("tail", task_id, p, check=True).stdout.strip() for p in ("a", "b")]
    steps = [re.fullmatch(rf"step=(\d+) job={alloc.group(1)}", o) for o in outs]
    assert all(steps), outs
    assert len({m.group(1) for m in steps if m}) == 2, "each process is its own step"


def test_slurm_steps_outside_an_allocation_is_refused(corral, spec_file, slurm):
    """srun outside an allocation would make one allocation per run: refused in one line."""
    task_id = new_id("so")
    spec = spec_file("""
name: so
backend: slurm-steps
processes:
  - name: a
    cmd: 'true'
""")
    env = {k: v for k, v in corral.env.items() if k not in ("SLURM_JOB_ID", "SLURM_JOBID")}
    result = subprocess.run(
        corral.argv("run", str(spec), "--id", task_id), capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"corral: {spec}: backend: slurm-steps runs processes as steps"), lines
    assert "Traceback" not in result.stderr
    assert not (corral.root / task_id).exists()  # nothing recorded


def test_slurm_steps_without_srun_fails_the_run_not_the_supervisor(corral, spec_file, tmp_path, slurm):
    """A missing srun is the run's spawn failure (recorded with why); the supervisor goes on."""
    task_id = new_id("sn")
    spec = spec_file("""
name: sn
backend: slurm-steps
processes:
  - name: a
    cmd: 'true'
""")
    empty = tmp_path / "no-slurm-here"
    empty.mkdir()
    result = subprocess.run(
        [
            "salloc",
            "-N1",
            "-n1",
            "--job-name",
            f"corral-test-{task_id}",
            *corral.argv("run", str(spec), "--id", task_id),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**corral.env, "CORRAL_SLURM_BIN": str(empty)},
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stderr  # the task FAILED; corral itself did not crash
    status = corral.status(task_id)
    assert status["state"] == "FAILED"
    runs = [r for r in raw_records(corral, task_id) if r["type"] == "RunUpdate"]
    assert runs[-1]["state"] == "FAILED"
    assert "spawn: Slurm command 'srun' not found" in runs[-1]["reason"], runs


def test_slurm_steps_ensemble_inside_sbatch(corral, spec_file, slurm, wait_terminal, tmp_path):
    task_id = new_id("sb")
    spec = spec_file("""
name: sb
backend: slurm-steps
job:
  cmd: 'echo "job {{params.i}} step=$SLURM_STEP_ID alloc=$SLURM_JOB_ID"'
params:
  i: {range: [0, 4]}
job_limit: 2
""")
    import shlex

    out = tmp_path / "launcher.out"
    wrap = shlex.join(corral.argv("run", str(spec), "--id", task_id, "-q"))
    from corral.backends.slurm_sbatch import SbatchRequest

    alloc = slurm.sbatch(
        SbatchRequest(
            wrap=wrap,
            job_name=f"corral-test-{task_id}",
            output=str(out),
            extra_args=("-n2",),
            env={"CORRAL_ROOT": str(corral.root)},
        )
    )
    info = wait_terminal([alloc], timeout=120)[alloc]
    assert info.state is SlurmState.COMPLETED, out.read_text()
    assert out.read_text().strip() == f"{task_id}: SUCCESS"
    steps = set()
    for job in range(4):
        text = corral("tail", task_id, str(job), check=True).stdout.strip()
        m = re.fullmatch(rf"job {job} step=(\d+) alloc={alloc}", text)
        assert m, text
        steps.add(m.group(1))
    assert len(steps) == 4, "every job ran as its own step of the allocation"


# -- the slow one, last: its ensemble has been running since the module started -----------------


@pytest.mark.slow
def test_time_limit_maps_to_timeout_and_is_retried(timeout_run: TimeoutRun | None, corral):
    assert timeout_run is not None
    run = timeout_run
    out, err = run.launcher.communicate(timeout=240)
    assert run.launcher.returncode == 0, err
    assert out.strip() == f"{run.task_id}: SUCCESS"
    corral = type(corral)(run.root)  # the same CLI helper, on that run's root
    records = raw_records(corral, run.task_id)
    ends = [
        (t["state"], t["attempt"], t["reason"])
        for t in transitions(records, 0)
        if t["state"] in ("SUCCESS", "FAILED", "KILLED", "LOST")
    ]
    assert ends == [("FAILED", 0, "slurm TIMEOUT"), ("SUCCESS", 1, "slurm COMPLETED")]
    assert run.marker.exists()
    assert corral("tail", run.task_id, "0", check=True).stdout == "second attempt\n"
    jobs = job_list(corral, run.task_id)
    assert [(j["state"], j["attempts"]) for j in jobs] == [("SUCCESS", 2)]


def test_jobs_submit_and_wait_over_tcp_from_the_nodes(corral, spec_file, slurm_ids, tmp_path):
    """A Slurm job reaches its ensemble's supervisor over TCP (on by default for slurm), with
    the task's token: dynamic submission and wait work wherever the job runs."""
    task_id = new_id("tcp")
    slurm_ids.append(task_id)
    out = tmp_path / "out"
    out.mkdir()
    spec = spec_file(f"""
name: tcp
backend: slurm
{POLL}
job:
  cmd: |
    if [ "{{{{params.role}}}}" = server ]; then
      echo "$CORRAL_CONTROL" > {out}/control
      jobs=$(corral submit --set role=client) && corral wait $jobs > {out}/waited
    else
      echo client
    fi
params:
  role: [server]
""")
    result = corral("run", str(spec), "--id", task_id, "-q", timeout=300)
    assert result.returncode == 0, result.stderr
    assert (out / "control").read_text().startswith("tcp://")
    assert (out / "waited").read_text().split() == ["1", "SUCCESS"]
    view = corral.status(task_id)
    assert view["jobs"]["total"] == 2 and view["jobs"]["succeeded"] == 2
