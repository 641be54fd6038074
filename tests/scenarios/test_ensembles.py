"""Ensembles through the real CLI: expansion, job limit, retries, halt, resume, submission."""

from __future__ import annotations

import collections
import json
import os
import signal

import psutil


def raw_records(corral, task_id: str) -> list[dict]:
    out = corral("read", task_id, "--raw", "--json", check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def max_live_jobs(records: list[dict]) -> int:
    live: set[int] = set()
    peak = 0
    for r in records:
        if r["type"] == "Transition" and r["job"] >= 0:
            if r["state"] in ("ACTIVE", "CLEANING", "FINALIZING", "SUBMITTED"):
                live.add(r["job"])
            else:
                live.discard(r["job"])
            peak = max(peak, len(live))
    return peak


def test_matrix_expansion_and_job_limit(corral, spec_file):
    spec = spec_file("""
name: grid
job:
  cmd: echo "{{params.a}} {{params.b}}" > {{job.dir}}/out; sleep 0.1
params:
  a: [x, y, z]
  b: {range: [0, 4]}
job_limit: 3
""")
    result = corral("run", str(spec), "--id", "grid1")
    assert result.returncode == 0, result.stderr
    outs = sorted((corral.root / "grid1" / "jobs" / str(j) / "out").read_text().strip() for j in range(12))
    assert outs == sorted(f"{a} {b}" for a in "xyz" for b in range(4))
    records = raw_records(corral, "grid1")
    assert max_live_jobs(records) == 3
    view = corral.status("grid1")
    assert view["jobs"]["succeeded"] == 12 and view["state"] == "SUCCESS"


def test_csv_params_file(corral, spec_file, tmp_path):
    (tmp_path / "runs.csv").write_text("name,value\nalpha,1\nbeta,2\ngamma,3\n")
    spec = spec_file("""
name: csv
job:
  cmd: echo "{{params.name}}={{params.value}}"
params_file: runs.csv
job_limit: 2
""")
    assert corral("run", str(spec), "--id", "csv1").returncode == 0
    outs = sorted(corral("tail", "csv1", str(j)).stdout.strip() for j in range(3))
    assert outs == ["alpha=1", "beta=2", "gamma=3"]


def test_jsonl_params_file(corral, spec_file, tmp_path):
    (tmp_path / "runs.jsonl").write_text('{"n": 1}\n{"n": 2}\n')
    spec = spec_file("""
name: jl
job:
  cmd: echo "n={{params.n}}"
params_file: runs.jsonl
""")
    assert corral("run", str(spec), "--id", "jl1").returncode == 0
    assert corral("tail", "jl1", "1").stdout.strip() == "n=2"


def test_retries_then_success(corral, spec_file, tmp_path):
    spec = spec_file(f"""
name: retry
job:
  cmd: 'if [ -e {tmp_path}/m{{{{params.i}}}} ]; then exit 0; else touch {tmp_path}/m{{{{params.i}}}}; exit 9; fi'
params:
  i: [0, 1, 2]
retries: 2
retry_backoff: 0.1
""")
    result = corral("run", str(spec), "--id", "rt1")
    assert result.returncode == 0, result.stderr
    view = corral("status", "rt1", "--jobs", "--json", check=True)
    jobs = json.loads(view.stdout)[0]["job_list"]
    assert [j["state"] for j in jobs] == ["SUCCESS"] * 3
    assert [j["attempts"] for j in jobs] == [2, 2, 2]


def test_a_retry_renders_its_attempt(corral, spec_file, tmp_path):
    """{{job.attempt}} is the job's attempt (0, then 1 for its first retry...), on every run."""
    out = tmp_path / "attempts"
    spec = spec_file(f"""
name: attempt
job:
  cmd: 'echo {{{{params.i}}}}:{{{{job.attempt}}}} >> {out}; [ {{{{job.attempt}}}} -ge {{{{params.i}}}} ]'
params:
  i: [0, 2]
retries: 3
retry_backoff: 0.1
""")
    result = corral("run", str(spec), "--id", "ra1")
    assert result.returncode == 0, result.stderr
    assert sorted(out.read_text().split()) == ["0:0", "2:0", "2:1", "2:2"]
    jobs = json.loads(corral("status", "ra1", "--jobs", "--json", check=True).stdout)[0]["job_list"]
    assert [j["attempts"] for j in jobs] == [1, 3]


def test_halt_policy_stops_launching(corral, spec_file):
    spec = spec_file("""
name: halt
job:
  cmd: exit 1
params:
  i: {range: [0, 20]}
job_limit: 1
halt: {failures: 3}
""")
    result = corral("run", str(spec), "--id", "ha1")
    assert result.returncode == 1
    view = corral.status("ha1")
    assert view["jobs"]["failed"] == 3
    assert view["jobs"]["pending"] == 17
    assert view["halted"]
    failed = json.loads(corral("status", "ha1", "--jobs", "--state", "failed", "--json").stdout)[0][
        "job_list"
    ]
    assert [j["job"] for j in failed] == [0, 1, 2]
    assert failed[0]["params"] == {"i": 0} and failed[0]["exit_code"] == 1


def test_resume_after_launcher_sigkill(corral, spec_file, tmp_path):
    ledger = tmp_path / "ledger"
    spec = spec_file(f"""
name: resume
job:
  cmd: 'echo "start {{{{job.index}}}}" >> {ledger}; sleep 0.4; echo "end {{{{job.index}}}}" >> {ledger}'
params:
  i: {{range: [0, 24]}}
job_limit: 4
""")
    launcher = corral.start("run", str(spec), "--id", "res1")
    corral.wait_for(lambda: ledger.exists() and ledger.read_text().count("end") >= 5)
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()
    running_at_kill = corral.status("res1")["jobs"]["running"]
    assert running_at_kill > 0
    result = corral("recover", "res1")
    assert result.returncode == 0, result.stderr
    starts = collections.Counter(
        line.split()[1] for line in ledger.read_text().splitlines() if line.startswith("start")
    )
    assert sorted(int(j) for j in starts) == list(range(24))
    assert set(starts.values()) == {1}, "no job that had started was run again"
    assert corral.status("res1")["jobs"]["succeeded"] == 24


def test_dynamic_submission_from_inside_a_job(corral, spec_file, tmp_path):
    spec = spec_file("""
name: dyn
job:
  cmd: |
    if [ "{{params.role}}" = server ]; then
      jobs=$(corral submit --set role=client --set n=1 && corral submit --set role=client --set n=2)
      corral wait $jobs
    else
      echo "client {{params.n}}"
    fi
params:
  role: [server]
  n: [0]
job_limit: 3
""")
    result = corral("run", str(spec), "--id", "dyn1", timeout=120)
    assert result.returncode == 0, result.stderr + corral("tail", "dyn1", "0", "--stderr").stdout
    view = corral.status("dyn1")
    assert view["jobs"]["total"] == 3 and view["jobs"]["succeeded"] == 3
    assert corral("tail", "dyn1", "2").stdout.strip() == "client 2"


def test_heartbeat_watchdog_kills_and_retries_silent_job(corral, spec_file, tmp_path):
    spec = spec_file(f"""
name: hb
job:
  cmd: |
    if [ "{{{{params.kind}}}}" = silent ] && [ ! -e {tmp_path}/retried ]; then touch {tmp_path}/retried; sleep 300; fi
    for i in 1 2 3 4; do corral heartbeat; sleep 0.5; done
  heartbeat: 1.5
params:
  kind: [silent, beating]
retries: 1
retry_backoff: 0.1
""")
    result = corral("run", str(spec), "--id", "hb1", timeout=120)
    assert result.returncode == 0, result.stderr
    jobs = json.loads(corral("status", "hb1", "--jobs", "--json").stdout)[0]["job_list"]
    assert jobs[0]["attempts"] == 2, jobs
    assert jobs[1]["attempts"] == 1, jobs
    history = corral("read", "hb1").stdout
    assert "heartbeat" in history


def test_ctrl_c_kills_running_jobs(corral, spec_file):
    spec = spec_file("""
name: cc
job:
  cmd: sleep 300
params:
  i: {range: [0, 10]}
job_limit: 2
""")
    launcher = corral.start("run", str(spec), "--id", "cc1")
    corral.wait_for(
        lambda: (corral.root / "cc1" / "journal").exists() and corral.status("cc1")["jobs"]["running"] == 2
    )
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(timeout=30) == 3
    view = corral.status("cc1")
    assert view["state"] == "KILLED"
    assert view["jobs"]["killed"] == 2 and view["jobs"]["pending"] == 8


def test_retry_failed_reruns_only_failed_jobs(corral, spec_file, tmp_path):
    spec = spec_file(f"""
name: rf
job:
  cmd: 'echo run >> {tmp_path}/j{{{{params.i}}}}; [ {{{{params.i}}}} != 1 ] || [ -e {tmp_path}/fixed ]'
params:
  i: [0, 1, 2]
""")
    assert corral("run", str(spec), "--id", "rf1").returncode == 1
    (tmp_path / "fixed").touch()
    result = corral("run", "--retry-failed", "rf1")
    assert result.returncode == 0, result.stderr
    assert [(tmp_path / f"j{i}").read_text().count("run") for i in range(3)] == [1, 2, 1]
    assert corral.status("rf1")["state"] == "SUCCESS"
    # a run's identity is unique in the task: the retried job's run is run 1, not run 0 again
    runs = {(r["job"], r["run"]) for r in raw_records(corral, "rf1") if r["type"] == "RunUpdate"}
    assert sorted(run for job, run in runs if job == 1) == [0, 1]
    assert sorted(run for job, run in runs if job != 1) == [0, 0]


def test_progress_lines_when_not_a_terminal(corral, spec_file):
    spec = spec_file("""
name: prog
job:
  cmd: "true"
params:
  i: {range: [0, 5]}
""")
    result = corral("run", str(spec), "--id", "pg1")
    assert result.returncode == 0
    assert "5/5 ended (5 succeeded, 0 failed, 0 killed, 0 lost)" in result.stderr


def test_bad_submission_is_refused_and_the_ensemble_carries_on(corral, spec_file, tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"n": 1}\n{"m": 2}\n')  # the second row lacks n, which the template needs
    spec = spec_file(f"""
name: subm
job:
  cmd: |
    if [ "{{{{params.n}}}}" = 0 ]; then
      corral submit --jsonl {jobs} 2> {tmp_path}/submit.err; echo $? > {tmp_path}/submit.rc
    fi
    echo "n={{{{params.n}}}}"
params:
  n: [0]
""")
    result = corral("run", str(spec), "--id", "sb1", timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "submit.rc").read_text().strip() == "2"
    assert "params.n" in (tmp_path / "submit.err").read_text()
    view = corral.status("sb1")
    assert view["jobs"]["total"] == 1 and view["jobs"]["succeeded"] == 1


def test_leftovers_of_an_ended_job_are_killed_while_the_ensemble_runs(corral, spec_file, tmp_path):
    """A job whose run daemonized a grandchild (out of its session) leaves it behind; the
    supervisor, a subreaper, kills it soon after the job ends, not only at the ensemble's end."""
    script = tmp_path / "job.py"
    script.write_text(
        "import os, sys, time\n"
        "job = int(sys.argv[1])\n"
        "if job == 0:\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        f"            open({str(tmp_path / 'daemon.pid')!r}, 'w').write(str(os.getpid()))\n"
        "            time.sleep(300)\n"
        "        os._exit(0)\n"
        "    time.sleep(0.3)\n"
        "else:\n"
        f"    open({str(tmp_path / 'go')!r}).read()\n"  # job 1 lives until the test is done
    )
    os.mkfifo(tmp_path / "go")
    spec = spec_file(f"""
name: leftovers
job:
  argv: [python3, {script}, "{{{{params.i}}}}"]
params:
  i: [0, 1]
job_limit: 2
""")
    sup = corral.start("run", str(spec), "--id", "lo1", "-q")
    try:
        pidfile = tmp_path / "daemon.pid"
        corral.wait_for(lambda: pidfile.exists() and pidfile.read_text() != "")
        daemon = int(pidfile.read_text())
        # job 1 runs until released: the daemon must go while the ensemble still runs
        corral.wait_for(
            lambda: not psutil.pid_exists(daemon) or psutil.Process(daemon).status() == psutil.STATUS_ZOMBIE,
            timeout=60,
        )
        assert sup.poll() is None, "the ensemble was still running"
    finally:
        sup.kill()
        sup.wait(timeout=10)
        corral("kill", "lo1", check=False)


def test_declared_memory_admits_only_what_fits_the_host(corral, spec_file, tmp_path):
    """Four jobs declaring 40% of the host's memory each: never more than two alive at once
    (all four were started together when jobs admitted in the same turn were not counted)."""
    with open("/proc/meminfo") as f:
        total = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:"))
    spy = tmp_path / "spy"
    spy.mkdir()
    spec = spec_file(
        f"""
name: mem
job:
  cmd: touch {spy}/run.$CORRAL_JOB && ls {spy} | grep -c '^run' >> {spy}/seen.$CORRAL_JOB && sleep 0.3 && rm {spy}/run.$CORRAL_JOB
  resources: {{memory: {int(total * 0.4)}}}
params:
  i: [0, 1, 2, 3]
job_limit: 8
"""
    )
    corral("run", str(spec), "--id", "mem", "-q", check=True)
    seen = [int(n) for p in spy.glob("seen.*") for n in p.read_text().split()]
    assert len(seen) == 4 and max(seen) <= 2, seen
