"""Crash safety through the real CLI: recover, --force, dead-supervisor kill/lose, pause."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime
from pathlib import Path

import psutil

from corral.supervisor import proc as procmod


def runs_of(view: dict, name: str) -> list[dict]:
    return next(p["runs"] for p in view["processes"] if p["name"] == name)


def _running(corral, task_id: str, name: str) -> bool:
    try:
        runs = runs_of(corral.status(task_id), name)
    except (AssertionError, StopIteration, KeyError):
        return False
    return bool(runs) and runs[-1]["state"] == "RUNNING"


def _start_running(corral, spec, task_id: str, name: str):
    """Start `corral run` in the background; return it and the pid of `name`'s first run."""
    sup = corral.start("run", str(spec), "--id", task_id)
    corral.wait_for(lambda: _running(corral, task_id, name))
    return sup, runs_of(corral.status(task_id), name)[-1]["pid"]


def _reaper_of(corral, task_id: str, process: str, run: int) -> int:
    """The pid of the reaper that started a run, from its S line in the ledger."""
    for line in (corral.root / task_id / "reaper.log").read_text().splitlines():
        fields = line.split("\t")
        if fields[0] == "S" and fields[2] == process and int(fields[3]) == run:
            return int(fields[6])
    raise AssertionError(f"no spawn of {process}/{run} in the ledger")


def _exists(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill_supervisor(proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


LONG_SHORT = """
name: ls
processes:
  - {name: long, cmd: "sleep 2; exit 5", max_failures: 1}
  - {name: short, cmd: "echo hi"}
  - {name: after, cmd: "echo after", after: [short]}
max_failures: 0
"""


def test_recover_with_processes_still_running(corral, spec_file, gate):
    go = gate()
    spec = spec_file(f"""
name: rr
processes:
  - {{name: long, cmd: "{go.cmd}; echo done"}}
  - {{name: next, cmd: "echo next", after: [long]}}
""")
    sup, pid = _start_running(corral, spec, "rr1", "long")
    _kill_supervisor(sup)
    assert psutil.pid_exists(pid), "the run must outlive its supervisor"
    recovering = corral.start("recover", "rr1")
    counts = recovering.stderr.readline()  # printed once the live run is re-attached
    assert "1 re-attached" in counts, counts
    go.release()
    assert recovering.wait(timeout=60) == 0, recovering.stderr.read()
    view = corral.status("rr1")
    assert view["state"] == "SUCCESS"
    long_runs = runs_of(view, "long")
    assert len(long_runs) == 1 and long_runs[0]["pid"] == pid and long_runs[0]["exit_code"] == 0
    assert runs_of(view, "next")[-1]["state"] == "SUCCESS"


def test_recover_after_they_all_finished(corral, spec_file, gate):
    go = gate()
    spec = spec_file(f"""
name: fin
processes:
  - {{name: a, cmd: "{go.cmd}; exit 0"}}
  - {{name: b, cmd: "{go.cmd}; exit 4"}}
max_failures: 0
""")
    sup = corral.start("run", str(spec), "--id", "af1")
    corral.wait_for(lambda: _running(corral, "af1", "a") and _running(corral, "af1", "b"), timeout=60)
    _kill_supervisor(sup)
    go.release()
    # both end while nobody supervises them (their reaper writes their ends to the ledger)
    ledger = corral.root / "af1" / "reaper.log"
    corral.wait_for(lambda: ledger.read_text().count("\nE\t") == 2, timeout=60)
    result = corral("recover", "af1")
    assert "2 exit codes recovered" in result.stderr, result.stderr
    view = corral.status("af1")
    assert runs_of(view, "a")[-1]["exit_code"] == 0
    assert runs_of(view, "b")[-1]["exit_code"] == 4
    assert runs_of(view, "b")[-1]["state"] == "FAILED"
    assert len(runs_of(view, "b")) == 1, "a run that really ended is not started again"


def test_recover_after_reboot_marks_lost_and_retries(corral, spec_file):
    spec = spec_file("""
name: reboot
processes:
  - {name: work, cmd: "sleep 300", max_failures: 2}
""")
    sup = corral.start("run", str(spec), "--id", "rb1")
    corral.wait_for(lambda: _running(corral, "rb1", "work"))
    run = runs_of(corral.status("rb1"), "work")[-1]
    _kill_supervisor(sup)
    # the machine-equivalent of a reboot: every process gone, the reaper first (so nobody
    # learns the run's status), then the run
    reaper = _reaper_of(corral, "rb1", "work", 0)
    os.kill(reaper, signal.SIGKILL)
    corral.wait_for(lambda: not _exists(reaper))
    os.killpg(run["pid"], signal.SIGKILL)
    corral.wait_for(lambda: not _exists(run["pid"]))
    assert not any(
        line.startswith("E\t") for line in (corral.root / "rb1" / "reaper.log").read_text().splitlines()
    )
    rec = corral.start("recover", "rb1")
    corral.wait_for(
        lambda: (
            len(runs_of(corral.status("rb1"), "work")) == 2
            and runs_of(corral.status("rb1"), "work")[-1]["state"] == "RUNNING"
        )
    )
    runs = runs_of(corral.status("rb1"), "work")
    assert runs[0]["state"] == "LOST"
    assert corral("kill", "rb1", "--grace", "1").returncode == 0
    rec.wait(timeout=30)


def test_run_killed_while_unsupervised_gets_its_real_status(corral, spec_file):
    """The reaper outlives the supervisor: a run SIGKILLed by someone else while nobody
    supervises is FAILED by signal 9 (its real end), not LOST, and is not rerun blindly."""
    spec = spec_file("""
name: ext
processes:
  - {name: work, cmd: "sleep 300"}
""")
    sup, pid = _start_running(corral, spec, "ext1", "work")
    _kill_supervisor(sup)
    os.killpg(pid, signal.SIGKILL)
    corral.wait_for(lambda: "E\t0\twork\t0\t" in (corral.root / "ext1" / "reaper.log").read_text())
    result = corral("recover", "ext1")
    assert result.returncode == 1, result.stderr
    run = runs_of(corral.status("ext1"), "work")[0]
    assert (run["state"], run["exit_code"]) == ("FAILED", -9)
    assert "signal 9" in run["reason"]


def test_recovered_exit_keeps_its_real_stop_time(corral, spec_file):
    """An exit learned from the ledger is recorded at the time the reaper saw it, not at the
    time of the recovery."""
    spec = spec_file("""
name: when
processes:
  - {name: work, cmd: "sleep 300"}
""")
    sup, pid = _start_running(corral, spec, "when1", "work")
    _kill_supervisor(sup)
    os.killpg(pid, signal.SIGKILL)
    ledger = corral.root / "when1" / "reaper.log"
    line = corral.wait_for(
        lambda: next((x for x in ledger.read_text().splitlines() if x.startswith("E\t0\twork\t0\t")), None)
    )
    ended_at = float(line.split("\t")[6])
    assert corral("recover", "when1").returncode == 1
    out = corral("read", "when1", "--raw", "--json", check=True).stdout
    records = [json.loads(x) for x in out.splitlines()]
    end = next(r for r in records if r["type"] == "RunUpdate" and r["state"] == "FAILED")
    recovered = next(r for r in records if r["type"] == "Attached" and r["recovered"])
    assert abs(end["at"] - ended_at) < 1e-3 and end["at"] < recovered["at"]


def test_second_supervisor_refused_then_force_takeover(corral, spec_file, gate):
    go = gate()
    spec = spec_file(f"""
name: stuck
processes:
  - {{name: work, cmd: "{go.cmd}"}}
""")
    sup, pid = _start_running(corral, spec, "fo1", "work")
    os.kill(sup.pid, signal.SIGSTOP)  # a live but stuck supervisor
    try:
        refused = corral("recover", "fo1")
        assert refused.returncode == 2
        assert f"pid {sup.pid}" in refused.stderr and "--force" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        forced = corral.start("recover", "fo1", "--force")
        assert "1 re-attached" in forced.stderr.readline()
        go.release()
        assert forced.wait(timeout=60) == 0, forced.stderr.read()
        assert sup.wait(timeout=10) == -signal.SIGKILL
    finally:
        if sup.poll() is None:
            os.kill(sup.pid, signal.SIGKILL)
    view = corral.status("fo1")
    assert view["state"] == "SUCCESS"
    assert runs_of(view, "work")[-1]["pid"] == pid


def test_a_supervisor_that_does_not_answer_is_an_error_not_a_take_over(corral, spec_file, gate):
    """`kill` of a live supervisor that does not answer (stopped, or a host too loaded for it to
    answer in time) says so in one line, exit 2, and neither takes the task over nor kills it:
    the request may still be acted on."""
    go = gate()
    spec = spec_file(f"""
name: mute
processes:
  - {{name: work, cmd: "{go.cmd}"}}
""")
    sup, pid = _start_running(corral, spec, "mu1", "work")
    os.kill(sup.pid, signal.SIGSTOP)
    try:
        slow = corral.start("kill", "mu1", env={"CORRAL_ANSWER_WAIT": "1.5"})
        _, err = slow.communicate(timeout=120)
        assert slow.returncode == 2, err
        assert "did not answer within 1.5 s" in err and len(err.strip().splitlines()) == 1, err
        assert _exists(pid) and sup.poll() is None  # nothing was taken over or killed
        bad = corral.start("kill", "mu1", env={"CORRAL_ANSWER_WAIT": "soon"})
        _, err = bad.communicate(timeout=120)
        assert bad.returncode == 2 and "CORRAL_ANSWER_WAIT='soon'" in err, err
    finally:
        os.kill(sup.pid, signal.SIGCONT)
    # the request was delivered: the supervisor, continued, acts on it (as the message warns)
    sup.wait(timeout=120)
    assert corral.status("mu1")["state"] == "KILLED" and not _exists(pid)


def test_kill_with_dead_supervisor_runs_finalizers(corral, spec_file, tmp_path):
    marker = tmp_path / "fin"
    spec = spec_file(f"""
name: dk
processes:
  - {{name: work, cmd: "sleep 300 & sleep 300; wait"}}
  - {{name: fin, cmd: "echo ran > {marker}", final: true}}
""")
    sup, pid = _start_running(corral, spec, "dk1", "work")
    _kill_supervisor(sup)
    result = corral("kill", "dk1", "--grace", "1")
    assert result.returncode == 0, result.stderr
    view = corral.status("dk1")
    assert view["state"] == "KILLED"
    assert runs_of(view, "work")[-1]["state"] == "KILLED"
    assert marker.read_text().strip() == "ran"
    assert not procmod.alive(pid, procmod.start_ticks(pid) or -1)


def test_lose_with_dead_supervisor(corral, spec_file, tmp_path):
    marker = tmp_path / "fin"
    spec = spec_file(f"""
name: lo
processes:
  - {{name: work, cmd: "sleep 300"}}
  - {{name: fin, cmd: "echo ran > {marker}", final: true}}
""")
    sup, pid = _start_running(corral, spec, "lo1", "work")
    _kill_supervisor(sup)
    result = corral("lose", "lo1")
    assert result.returncode == 0, result.stderr
    view = corral.status("lo1")
    assert view["state"] == "LOST"
    assert runs_of(view, "work")[-1]["state"] == "KILLED"
    assert not marker.exists(), "lose runs no finalizers"
    corral.wait_for(lambda: not _exists(pid))


def test_lose_when_nothing_alive_records_lost(corral, spec_file):
    spec = spec_file("""
name: lo2
processes:
  - {name: work, cmd: "sleep 300"}
""")
    sup, pid = _start_running(corral, spec, "lo2", "work")
    _kill_supervisor(sup)
    reaper = _reaper_of(corral, "lo2", "work", 0)
    os.kill(reaper, signal.SIGKILL)  # nobody left who could know how the run ended
    corral.wait_for(lambda: not _exists(reaper))
    os.killpg(pid, signal.SIGKILL)
    corral.wait_for(lambda: not _exists(pid))
    assert corral("lose", "lo2").returncode == 0
    view = corral.status("lo2")
    assert view["state"] == "LOST"
    assert runs_of(view, "work")[-1]["state"] == "LOST"


def _proc_state(pid: int) -> str:
    return psutil.Process(pid).status()


def test_pause_resume_and_across_a_crash(corral, spec_file, gate):
    go = gate()
    timeout = 6.0  # of active time; generous, so that the pause lands before it on a busy machine
    spec = spec_file(f"""
name: pz
processes:
  - {{name: work, cmd: "{go.cmd}", timeout: {timeout}}}
""")
    sup, pid = _start_running(corral, spec, "pz1", "work")
    assert corral("pause", "pz1").returncode == 0
    corral.wait_for(lambda: runs_of(corral.status("pz1"), "work")[-1]["state"] == "PAUSED", timeout=60)
    corral.wait_for(lambda: _proc_state(pid) == psutil.STATUS_STOPPED, timeout=60)
    _kill_supervisor(sup)
    started = datetime.fromisoformat(runs_of(corral.status("pz1"), "work")[-1]["started_at"]).timestamp()
    # the measured window: wall time since the start passes the timeout while the run is paused
    time.sleep(max(0.0, started + timeout + 0.5 - time.time()))
    rec = corral.start("recover", "pz1")
    counts = rec.stderr.readline()  # printed once recovery re-attached the paused run
    assert "1 re-attached" in counts, counts
    assert runs_of(corral.status("pz1"), "work")[-1]["state"] == "PAUSED", "stays paused after recovery"
    assert _proc_state(pid) == psutil.STATUS_STOPPED
    assert corral("resume", "pz1").returncode == 0
    go.release()
    assert rec.wait(timeout=60) == 0
    run = runs_of(corral.status("pz1"), "work")[-1]
    assert run["state"] == "SUCCESS" and run["pid"] == pid


def test_pause_with_dead_supervisor(corral, spec_file):
    spec = spec_file("""
name: pd
processes:
  - {name: work, cmd: "sleep 300"}
""")
    sup, pid = _start_running(corral, spec, "pd1", "work")
    _kill_supervisor(sup)
    assert corral("pause", "pd1").returncode == 0
    assert _proc_state(pid) == psutil.STATUS_STOPPED
    assert runs_of(corral.status("pd1"), "work")[-1]["state"] == "PAUSED"
    assert corral("lose", "pd1").returncode == 0


def test_escaped_daemonized_grandchild_is_killed(corral, spec_file, tmp_path):
    pidfile = tmp_path / "daemon.pid"
    spec = spec_file(f"""
name: esc
processes:
  - name: spawner
    argv: [python3, -c, "import os, time\\nif os.fork() == 0:\\n    os.setsid()\\n    if os.fork() == 0:\\n        open('{pidfile}', 'w').write(str(os.getpid()))\\n        time.sleep(300)\\n    os._exit(0)\\ntime.sleep(0.5)"]
""")
    result = corral("run", str(spec), "--id", "esc1")
    assert result.returncode == 0, result.stderr
    daemon = int(Path(pidfile).read_text())
    corral.wait_for(lambda: not _exists(daemon))


def test_escaped_grandchild_killed_after_supervisor_crash(corral, spec_file, tmp_path):
    pidfile = tmp_path / "daemon.pid"
    spec = spec_file(f"""
name: esc2
processes:
  - name: spawner
    argv: [python3, -c, "import os, time\\nif os.fork() == 0:\\n    os.setsid()\\n    if os.fork() == 0:\\n        open('{pidfile}', 'w').write(str(os.getpid()))\\n        time.sleep(300)\\n    os._exit(0)\\ntime.sleep(300)"]
""")
    sup = corral.start("run", str(spec), "--id", "esc2")
    corral.wait_for(lambda: pidfile.exists() and pidfile.read_text())
    daemon = int(pidfile.read_text())
    _kill_supervisor(sup)
    assert corral("kill", "esc2", "--grace", "1").returncode == 0
    corral.wait_for(lambda: not _exists(daemon))


def test_torn_journal_is_repaired_on_recovery(corral, spec_file, gate):
    go = gate()
    spec = spec_file(f"""
name: torn
processes:
  - {{name: work, cmd: "{go.cmd}"}}
""")
    sup = corral.start("run", str(spec), "--id", "tj1")
    corral.wait_for(lambda: _running(corral, "tj1", "work"), timeout=60)
    _kill_supervisor(sup)
    go.release()  # it ends while nobody supervises: recovery learns its exit from the ledger
    journal = corral.root / "tj1" / "journal"
    with open(journal, "ab") as f:
        f.write(b"\x40\x00\x00\x00\x12\x34")  # half a frame, as a crash mid-write leaves it
    result = corral("recover", "tj1")
    assert result.returncode == 0, result.stderr
    assert "journal repaired" in corral("read", "tj1").stdout
    assert corral.status("tj1")["state"] == "SUCCESS"


def test_sigterm_to_supervisor_is_a_graceful_kill(corral, spec_file, tmp_path):
    marker = tmp_path / "fin"
    spec = spec_file(f"""
name: term
processes:
  - {{name: work, cmd: "sleep 300"}}
  - {{name: fin, cmd: "echo ran > {marker}", final: true}}
""")
    sup = corral.start("run", str(spec), "--id", "te1")
    corral.wait_for(lambda: _running(corral, "te1", "work"))
    sup.send_signal(signal.SIGINT)
    assert sup.wait(timeout=30) == 3
    assert corral.status("te1")["state"] == "KILLED"
    assert marker.exists()


def test_sighup_does_not_stop_supervision(corral, spec_file, gate):
    go = gate()
    spec = spec_file(f"""
name: hup
processes:
  - {{name: work, cmd: "{go.cmd}"}}
""")
    sup = corral.start("run", str(spec), "--id", "hu1")
    corral.wait_for(lambda: _running(corral, "hu1", "work"), timeout=60)
    sup.send_signal(signal.SIGHUP)
    go.release()
    assert sup.wait(timeout=30) == 0
    assert corral.status("hu1")["state"] == "SUCCESS"


def test_retry_failed_crash_before_spawn_does_not_take_the_earlier_attempts_run(corral, spec_file):
    """retry-failed numbers the job's runs on (run 1 here); a crash between the relaunch's
    intent and its spawn must leave that run LOST (it never started), not re-attached to the
    earlier attempt's pid or given the earlier attempt's exit code from the ledger."""
    spec = spec_file("""
name: rf
job:
  cmd: "exit {{params.code}}"
params:
  code: [0, 3]
""")
    assert corral("run", str(spec), "--id", "rf1", "-q").returncode == 1
    crashed = corral.start("run", "--retry-failed", "rf1", "-q", env={"CORRAL_CRASH": "spawn:1"})
    crashed.wait(timeout=60)
    assert crashed.returncode == -signal.SIGKILL
    assert corral("recover", "rf1").returncode == 1  # the retried job exits 3 again
    history = corral("read", "rf1", check=True).stdout
    tail = history[history.index("retry-failed") :]
    assert "main[1] -> LOST" in tail, tail
    assert "main[0]" not in tail and "main[1] -> RUNNING" not in tail, tail


def test_console_runs_started_after_sighup_let_go_of_the_terminal(corral, spec_file, gate):
    """After SIGHUP the supervisor writes to /dev/null; so must console runs it starts later
    (their reaper held the original stdout for them)."""
    first_go, later_go = gate(), gate()
    # `exec cat FIFO`: the run's pid is the process whose fds are read (output: none)
    spec = spec_file(f"""
name: hupc
processes:
  - {{name: first, cmd: "exec cat {first_go.path}", logger: {{destination: console}}}}
  - {{name: later, cmd: "exec cat {later_go.path}", after: [first], logger: {{destination: console}}}}
""")
    sup = corral.start("run", str(spec), "--id", "hc1")
    try:
        corral.wait_for(lambda: _running(corral, "hc1", "first"), timeout=60)
        first = runs_of(corral.status("hc1"), "first")[-1]["pid"]
        assert os.readlink(f"/proc/{first}/fd/1").startswith("pipe:")  # the test's pipe
        sup.send_signal(signal.SIGHUP)
        # the supervisor has taken SIGHUP once its own output goes to /dev/null
        corral.wait_for(lambda: os.readlink(f"/proc/{sup.pid}/fd/2") == "/dev/null", timeout=60)
        first_go.release()
        corral.wait_for(lambda: _running(corral, "hc1", "later"), timeout=60)
        later = runs_of(corral.status("hc1"), "later")[-1]["pid"]
        assert os.readlink(f"/proc/{later}/fd/1") == "/dev/null"
        assert os.readlink(f"/proc/{later}/fd/2") == "/dev/null"
        later_go.release()
        assert sup.wait(timeout=30) == 0
    finally:
        if sup.poll() is None:
            sup.kill()
