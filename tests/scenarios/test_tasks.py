"""Tasks through the real CLI and real processes (the foundation issue's scenarios)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest


def runs_of(view: dict, name: str) -> list[dict]:
    for p in view["processes"]:
        if p["name"] == name:
            return p["runs"]
    raise AssertionError(f"no process {name}")


def test_ordering_graph_of_six_processes(corral, spec_file, tmp_path):
    order = tmp_path / "order.txt"
    spec = spec_file(f"""
name: graph
processes:
  - {{name: a, cmd: "echo a >> {order}"}}
  - {{name: b, cmd: "echo b >> {order}", after: [a]}}
  - {{name: c, cmd: "echo c >> {order}", after: [a]}}
  - {{name: d, cmd: "echo d >> {order}", after: [b, c]}}
  - {{name: e, cmd: "echo e >> {order}", after: [d]}}
  - {{name: f, cmd: "echo f >> {order}", after: [c]}}
""")
    result = corral("run", str(spec), "--id", "g1")
    assert result.returncode == 0, result.stderr
    seen = order.read_text().split()
    assert sorted(seen) == list("abcdef")
    pos = {name: i for i, name in enumerate(seen)}
    for later, earlier in [("b", "a"), ("c", "a"), ("d", "b"), ("d", "c"), ("e", "d"), ("f", "c")]:
        assert pos[earlier] < pos[later]
    view = corral.status("g1")
    assert view["state"] == "SUCCESS"
    assert all(
        p["runs"][-1]["state"] == "SUCCESS" and p["runs"][-1]["exit_code"] == 0 for p in view["processes"]
    )


def test_process_fails_twice_then_succeeds_under_max_failures_3(corral, spec_file, tmp_path):
    count = tmp_path / "count"
    spec = spec_file(f"""
name: flaky
processes:
  - name: flaky
    cmd: 'n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}; [ $n -ge 3 ]'
    max_failures: 3
""")
    result = corral("run", str(spec), "--id", "f1")
    assert result.returncode == 0, result.stderr
    runs = runs_of(corral.status("f1"), "flaky")
    assert [r["state"] for r in runs] == ["FAILED", "FAILED", "SUCCESS"]
    assert [r["exit_code"] for r in runs] == [1, 1, 0]


def test_failure_stops_dependents_and_fails_task(corral, spec_file):
    spec = spec_file("""
name: broken
processes:
  - {name: first, cmd: "exit 7"}
  - {name: second, cmd: "echo never", after: [first]}
""")
    result = corral("run", str(spec), "--id", "b1")
    assert result.returncode == 1
    view = corral.status("b1")
    assert view["state"] == "FAILED"
    assert runs_of(view, "first")[-1]["exit_code"] == 7
    assert runs_of(view, "second") == []


def test_ephemeral_process_killed_when_rest_is_done(corral, spec_file):
    spec = spec_file("""
name: eph
processes:
  - {name: sidecar, cmd: "sleep 300", ephemeral: true}
  - {name: main, cmd: "sleep 0.3"}
""")
    started = time.time()
    result = corral("run", str(spec), "--id", "e1")
    assert result.returncode == 0, result.stderr
    assert time.time() - started < 30
    view = corral.status("e1")
    assert view["state"] == "SUCCESS"
    assert runs_of(view, "sidecar")[-1]["state"] == "KILLED"


@pytest.mark.parametrize(("main_cmd", "expected"), [("true", "SUCCESS"), ("exit 3", "FAILED")])
def test_final_processes_run_after_success_and_failure(corral, spec_file, tmp_path, main_cmd, expected):
    marker = tmp_path / "final-ran"
    spec = spec_file(f"""
name: fin
processes:
  - {{name: main, cmd: "{main_cmd}"}}
  - {{name: fin1, cmd: "echo 1 >> {marker}", final: true}}
  - {{name: fin2, cmd: "echo 2 >> {marker}", final: true, after: [fin1]}}
""")
    result = corral("run", str(spec), "--id", "fin")
    assert corral.status("fin")["state"] == expected
    assert result.returncode == (0 if expected == "SUCCESS" else 1)
    assert marker.read_text().split() == ["1", "2"]


def test_final_processes_run_after_kill(corral, spec_file, tmp_path):
    marker = tmp_path / "final-ran"
    spec = spec_file(f"""
name: finkill
processes:
  - {{name: main, cmd: "sleep 300"}}
  - {{name: fin, cmd: "echo finalized > {marker}", final: true}}
""")
    proc = corral.start("run", str(spec), "--id", "k1")
    corral.wait_for(lambda: _latest_state(corral.view("k1"), "main") == "RUNNING", timeout=60)
    killed = corral("kill", "k1", "--grace", "2")
    assert killed.returncode == 0, killed.stderr
    assert proc.wait(timeout=30) == 3
    view = corral.status("k1")
    assert view["state"] == "KILLED"
    assert runs_of(view, "main")[-1]["state"] == "KILLED"
    assert marker.read_text().strip() == "finalized"


def test_max_concurrency_1_serialises_runs(corral, spec_file, tmp_path):
    spec = spec_file("""
name: serial
max_concurrency: 1
processes:
  - {name: a, cmd: "sleep 0.2"}
  - {name: b, cmd: "sleep 0.2"}
  - {name: c, cmd: "sleep 0.2"}
""")
    assert corral("run", str(spec), "--id", "s1").returncode == 0
    intervals = []
    for p in corral.status("s1")["processes"]:
        r = p["runs"][-1]
        intervals.append((r["started_at"], r["finished_at"]))
    intervals.sort()
    for (_, end), (start, _) in zip(intervals, intervals[1:], strict=False):
        assert end <= start, intervals


def test_daemon_restarted_after_success(corral, spec_file, gate):
    go = gate()
    spec = spec_file(f"""
name: daemon
processes:
  - {{name: ticker, cmd: "sleep 0.1", daemon: true, ephemeral: true}}
  - {{name: main, cmd: "{go.cmd}"}}
""")
    sup = corral.start("run", str(spec), "--id", "d1")
    # main lives until the ticker has been restarted a few times, however slow the machine
    corral.wait_for(
        lambda: (view := corral.view("d1")) is not None and len(runs_of(view, "ticker")) >= 3, timeout=60
    )
    go.release()
    assert sup.wait(timeout=60) == 0
    runs = runs_of(corral.status("d1"), "ticker")
    assert len(runs) >= 3
    assert all(r["state"] == "SUCCESS" for r in runs[:-1])


def test_per_run_timeout(corral, spec_file):
    spec = spec_file("""
name: slow
processes:
  - {name: slow, cmd: "sleep 300", timeout: 0.5}
""")
    started = time.time()
    result = corral("run", str(spec), "--id", "t1")
    assert result.returncode == 1
    assert time.time() - started < 30
    run = runs_of(corral.status("t1"), "slow")[-1]
    assert run["state"] == "FAILED"
    assert run["reason"] == "timeout"


def _descendant_pids(corral, task_id: str) -> list[int]:
    needle = f"\0CORRAL_TASK_ID={task_id}\0".encode()
    found = []
    for p in psutil.process_iter():
        try:
            if (
                needle in b"\0" + open(f"/proc/{p.pid}/environ", "rb").read()
                and p.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(p.pid)
        except (OSError, psutil.Error):
            pass
    return found


def test_kill_of_process_that_spawned_grandchildren(corral, spec_file, tmp_path):
    spec = spec_file("""
name: tree
processes:
  - name: tree
    cmd: "sleep 300 & sleep 300 & (sleep 300 &) ; sh -c 'sleep 300' & wait"
""")
    proc = corral.start("run", str(spec), "--id", "tree1")
    corral.wait_for(lambda: len(_descendant_pids(corral, "tree1")) >= 5, timeout=30)
    pids = _descendant_pids(corral, "tree1")
    assert corral("kill", "tree1", "--grace", "2").returncode == 0
    assert proc.wait(timeout=30) == 3
    gone = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=5)[1]
    assert [p for p in gone if p.status() != psutil.STATUS_ZOMBIE] == []
    assert _descendant_pids(corral, "tree1") == []


def test_process_ignoring_sigterm_is_killed_after_grace(corral, spec_file):
    spec = spec_file("""
name: stubborn
kill_grace: 1
processes:
  - name: stubborn
    argv: [python3, -c, "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(300)"]
""")
    proc = corral.start("run", str(spec), "--id", "st1")
    corral.wait_for(lambda: corral("tail", "st1", "stubborn").stdout.startswith("ready"), timeout=30)
    started = time.time()
    assert corral("kill", "st1").returncode == 0
    assert proc.wait(timeout=30) == 3
    elapsed = time.time() - started
    assert elapsed >= 1.0
    run = runs_of(corral.status("st1"), "stubborn")[-1]
    assert run["state"] == "KILLED"
    assert run["exit_code"] == -signal.SIGKILL


def test_templating_ports_params_and_task_id(corral, spec_file, tmp_path):
    spec = spec_file("""
name: tmpl
processes:
  - {name: show, cmd: "echo {{task.id}} {{ports.http}} {{params.word}}"}
""")
    result = corral("run", str(spec), "--id", "tm1", "-P", "http=8123", "--set", "word=a b; echo injected")
    assert result.returncode == 0, result.stderr
    out = corral("tail", "tm1", "show").stdout
    assert out.strip() == "tm1 8123 a b; echo injected"


def test_logs_layout_and_tail(corral, spec_file):
    spec = spec_file("""
name: logs
processes:
  - {name: talk, cmd: "echo out; echo err >&2"}
""")
    assert corral("run", str(spec), "--id", "l1").returncode == 0
    logs = corral.root / "l1" / "logs"
    assert (logs / "talk.0.stdout").read_text() == "out\n"
    assert (logs / "talk.0.stderr").read_text() == "err\n"
    assert corral("tail", "l1", "talk", "--stderr").stdout == "err\n"


def test_read_replays_history_and_raw_records(corral, spec_file):
    spec = spec_file("""
name: hist
processes:
  - {name: one, cmd: "true"}
""")
    assert corral("run", str(spec), "--id", "h1").returncode == 0
    history = corral("read", "h1").stdout
    assert "one[0] -> RUNNING" in history and "one[0] -> SUCCESS" in history
    raw = [json.loads(line) for line in corral("read", "h1", "--raw", "--json").stdout.splitlines()]
    assert raw[0]["type"] == "Opened"
    assert any(r["type"] == "RunUpdate" and r["state"] == "SUCCESS" for r in raw)


def test_simplerun(corral):
    result = corral("simplerun", "--id", "sr1", "--", "sh", "-c", "exit 4")
    assert result.returncode == 1
    assert runs_of(corral.status("sr1"), "simple")[-1]["exit_code"] == 4


def test_status_json_shape(corral, spec_file):
    spec = spec_file("""
name: shape
processes:
  - {name: p, cmd: "true"}
""")
    corral("run", str(spec), "--id", "sh1", check=True)
    view = corral.status("sh1")
    for key in ("id", "state", "started_at", "finished_at", "processes"):
        assert key in view
    run = view["processes"][0]["runs"][0]
    for key in ("run", "state", "pid", "exit_code", "started_at", "finished_at"):
        assert key in run
    assert isinstance(run["pid"], int)


def test_second_run_of_live_id_refused_with_hint(corral, spec_file):
    spec = spec_file("""
name: busy
processes:
  - {name: p, cmd: "sleep 300"}
""")
    proc = corral.start("run", str(spec), "--id", "busy1")
    corral.wait_for(lambda: (corral.root / "busy1" / "journal").exists())
    again = corral("run", str(spec), "--id", "busy1")
    assert again.returncode == 2
    assert "supervised by pid" in again.stderr and "recover" not in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def test_log_rotation_by_size(corral, spec_file):
    spec = spec_file("""
name: rot
processes:
  - name: chatty
    cmd: "i=0; while [ $i -lt 40 ]; do head -c 1000 /dev/zero | tr '\\\\0' x; echo; i=$((i+1)); sleep 0.1; done"
    logger: {destination: file, mode: rotate, rotate: {size: 2KB, backups: 2}}
""")
    assert corral("run", str(spec), "--id", "rot1").returncode == 0
    logs = Path(corral.root / "rot1" / "logs")
    assert (logs / "chatty.0.stdout.1").exists()
    assert (logs / "chatty.0.stdout.2").exists()
    assert not (logs / "chatty.0.stdout.3").exists()


def test_detach_returns_at_once_and_supervises_in_background(corral, spec_file, gate):
    go = gate()
    spec = spec_file(f"""
name: bg
processes:
  - {{name: work, cmd: "{go.cmd}; echo finished"}}
""")
    # the run cannot end before the release below: returning at all proves it did not wait
    result = corral("run", str(spec), "--id", "bg1", "--detach")
    assert result.returncode == 0, result.stderr
    assert "supervised by pid" in result.stdout
    assert corral.status("bg1")["supervised"] is True
    go.release()
    corral.wait_for(lambda: corral.status("bg1")["state"] == "SUCCESS", timeout=60)
    assert corral("tail", "bg1", "work").stdout == "finished\n"


def test_tail_follow_prints_while_the_run_is_alive(corral, spec_file):
    spec = spec_file("""
name: follow
processes:
  - {name: talk, cmd: "for i in 1 2 3; do echo line$i; sleep 0.4; done"}
""")
    corral("run", str(spec), "--id", "fo1", "--detach", check=True)
    corral.wait_for(lambda: (corral.root / "fo1" / "logs" / "talk.0.stdout").exists())
    followed = corral("tail", "fo1", "talk", "-f", timeout=30)
    assert followed.stdout.split() == ["line1", "line2", "line3"]


def test_status_verbose_levels(corral, spec_file):
    spec = spec_file("""
name: verbose
processes:
  - {name: flaky, cmd: "[ -e marker ] || { touch marker; exit 2; }", max_failures: 2}
""")
    corral("run", str(spec), "--id", "v1", "-P", "http=8080", check=True)
    v1 = corral("status", "v1", "-v").stdout
    assert "sandbox" in v1 and "8080" in v1
    vv = corral("status", "v1", "-vv").stdout
    assert "PROCESS" in vv and vv.count("flaky") >= 2
    vvv = corral("status", "v1", "-vvv").stdout
    assert "FAILED" in vvv and "SUCCESS" in vvv


def test_relative_sandbox_is_where_the_supervisor_runs_for_every_process(corral, spec_file, tmp_path):
    spec = spec_file("""
name: rel
sandbox: relbox
processes:
  - {name: a, cmd: pwd}
  - {name: b, cmd: pwd, after: [a]}
""")
    here = tmp_path / "here"
    here.mkdir()
    result = subprocess.run(
        corral.argv("run", str(spec), "--id", "rel1"),
        cwd=here,
        env=corral.env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    logs = corral.root / "rel1" / "logs"
    assert (logs / "a.0.stdout").read_text().strip() == str(here / "relbox")
    assert (logs / "b.0.stdout").read_text().strip() == str(here / "relbox")


def _latest_state(view: dict | None, process: str) -> str | None:
    """The state of PROCESS's latest run, None while the task or the run does not exist yet."""
    runs = runs_of(view, process) if view is not None else []
    return runs[-1]["state"] if runs else None


@pytest.mark.parametrize("where", ["task", "process"])
def test_env_clean_starts_from_path_home_and_the_marks(corral, spec_file, where):  # type: ignore[no-untyped-def]
    task_level = "env_clean: true\n" if where == "task" else ""
    process_level = "    env_clean: true\n" if where == "process" else ""
    spec = spec_file(
        f"name: ec\n{task_level}env: {{MINE: m}}\nprocesses:\n"
        f"  - name: clean\n    argv: [env]\n{process_level}"
        "  - name: full\n    argv: [env]\n"
    )
    corral.env["LEAKY_SECRET"] = "x"
    corral("run", str(spec), "--id", "ec", check=True)
    logs = corral.root / "ec" / "logs"
    clean = dict(line.split("=", 1) for line in (logs / "clean.0.stdout").read_text().splitlines())
    full = (logs / "full.0.stdout").read_text()
    assert "LEAKY_SECRET" not in clean and clean["MINE"] == "m"
    assert {k for k in clean if not k.startswith("CORRAL_")} == {"PATH", "HOME", "MINE"}, clean
    assert {"CORRAL_TASK_ID", "CORRAL_MARK", "CORRAL_CONTROL"} <= clean.keys()
    assert ("LEAKY_SECRET=x" in full) == (where == "process")
