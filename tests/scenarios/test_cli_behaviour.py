"""CLI behaviour that was simply wrong (issue 9), one test per defect, through the real CLI."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import psutil
import pytest

BLOCKED = """
name: b
processes:
  - {name: a, cmd: "cat FIFO > /dev/null"}
  - {name: b, cmd: "cat FIFO > /dev/null"}
"""


def _blocked(tmp_path: Path, spec_file, text: str = BLOCKED):  # type: ignore[no-untyped-def]
    fifo = tmp_path / "release"
    os.mkfifo(fifo)
    return spec_file(text.replace("FIFO", str(fifo))), fifo


def _release(fifo: Path) -> None:
    fd = os.open(fifo, os.O_WRONLY)  # every run reading the fifo then sees its end, exits 0
    os.close(fd)


def _runs(view: dict | None) -> dict[str, dict]:
    """The latest run of each process, by name ({} while the task is not there yet)."""
    if view is None:
        return {}
    return {p["name"]: p["runs"][-1] for p in view.get("processes", []) if p["runs"]}


def _all_running(corral, task_id: str, names: tuple[str, ...]) -> bool:  # type: ignore[no-untyped-def]
    runs = _runs(corral.view(task_id))
    return all(n in runs and runs[n]["state"] == "RUNNING" for n in names)


def test_read_names_an_exit_status_once(corral, spec_file):
    spec = spec_file("name: f\nprocesses:\n  - {name: a, cmd: 'exit 1'}\n")
    assert corral("run", str(spec), "--id", "rd1").returncode == 1
    out = corral("read", "rd1", check=True).stdout
    assert "FAILED (exit 1" in out
    for line in out.splitlines():
        inside = re.findall(r"\((.*)\)", line)
        for group in inside:
            items = [i.strip() for i in group.split(",")]
            assert len(items) == len(set(items)), line


def test_progress_and_status_count_a_halted_ensemble_alike(corral, spec_file):
    spec = spec_file("""
name: halt
job:
  cmd: exit 1
params:
  i: {range: [0, 10]}
job_limit: 1
halt: {failures: 2}
""")
    result = corral("run", str(spec), "--id", "h1")
    assert result.returncode == 1
    shown = re.findall(r"(\d+)/10 ended", result.stderr)
    assert shown, result.stderr
    table = corral("status", "h1", check=True).stdout
    assert f"{shown[-1]}/10 ended" in table, (result.stderr, table)
    assert shown[-1] == "2"


def test_status_detail_counts_killed_jobs(corral, spec_file, tmp_path):
    spec, _ = _blocked(
        tmp_path, spec_file, 'name: k\njob: {cmd: "cat FIFO > /dev/null"}\nparams: {i: [0, 1]}\n'
    )
    corral("run", str(spec), "--id", "dk1", "--detach", check=True)
    corral.wait_for(lambda: (v := corral.view("dk1")) is not None and v["jobs"]["running"] == 2, timeout=60)
    assert corral("kill", "dk1").returncode == 0
    view = corral.status("dk1")
    assert view["jobs"]["killed"] == 2
    table = corral("status", "dk1", check=True).stdout
    assert "2 killed" in table, table


@pytest.mark.parametrize("op", ["kill", "lose", "pause", "resume"])
def test_control_of_an_ended_task_is_refused_alike(corral, op):
    assert corral("simplerun", "--id", "done1", "--", "true").returncode == 0
    journal = corral.root / "done1" / "journal"
    before = journal.read_bytes()
    result = corral(op, "done1")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == f"corral: done1: already SUCCESS; nothing to {op}"
    assert journal.read_bytes() == before


def test_hint_for_a_live_id_is_not_recover(corral, spec_file, tmp_path):
    spec, fifo = _blocked(tmp_path, spec_file)
    out = corral("run", str(spec), "--id", "live1", "--detach", check=True).stdout
    pid = int(out.split()[-1])
    corral.wait_for(lambda: _all_running(corral, "live1", ("a", "b")), timeout=60)
    again = corral("run", str(spec), "--id", "live1")
    assert again.returncode == 2
    assert "recover" not in again.stderr
    assert f"supervised by pid {pid}" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    _release(fifo)


def test_hint_for_an_unsupervised_id_is_recover(corral, spec_file, tmp_path):
    spec, _ = _blocked(tmp_path, spec_file)
    sup = corral.start("run", str(spec), "--id", "dead1")
    corral.wait_for(lambda: _all_running(corral, "dead1", ("a", "b")), timeout=60)
    os.kill(sup.pid, signal.SIGKILL)
    sup.wait(timeout=30)
    again = corral("run", str(spec), "--id", "dead1")
    assert again.returncode == 2
    assert "corral recover dead1" in again.stderr


def test_kill_of_a_live_ensemble_prints_the_state_after_the_kill(corral, spec_file, tmp_path):
    spec, _ = _blocked(
        tmp_path, spec_file, 'name: k\njob: {cmd: "cat FIFO > /dev/null"}\nparams: {i: [0, 1, 2]}\n'
    )
    for n in range(3):
        task_id = f"ke{n}"
        corral("run", str(spec), "--id", task_id, "--detach", check=True)
        corral.wait_for(
            lambda t=task_id: (v := corral.view(t)) is not None and v["jobs"]["running"] >= 2, timeout=60
        )
        result = corral("kill", task_id)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"{task_id}: KILLED"


def _stopped(pid: int) -> bool:
    return psutil.Process(pid).status() == psutil.STATUS_STOPPED


def test_resume_one_process_after_a_task_wide_pause(corral, spec_file, tmp_path):
    spec, fifo = _blocked(tmp_path, spec_file)
    corral("run", str(spec), "--id", "pr1", "--detach", check=True)
    corral.wait_for(lambda: _all_running(corral, "pr1", ("a", "b")), timeout=60)
    pids = {name: run["pid"] for name, run in _runs(corral.view("pr1")).items()}
    assert corral("pause", "pr1").returncode == 0
    corral.wait_for(
        lambda: all(r["state"] == "PAUSED" for r in _runs(corral.view("pr1")).values()), timeout=60
    )
    assert corral("resume", "pr1", "a").returncode == 0
    corral.wait_for(lambda: _runs(corral.view("pr1"))["a"]["state"] == "RUNNING", timeout=60)
    corral.wait_for(lambda: not _stopped(pids["a"]), timeout=60)
    assert _runs(corral.view("pr1"))["b"]["state"] == "PAUSED"
    assert _stopped(pids["b"])
    assert corral("resume", "pr1").returncode == 0
    corral.wait_for(lambda: not _stopped(pids["b"]), timeout=60)
    _release(fifo)
    corral.wait_for(lambda: corral.status("pr1")["state"] == "SUCCESS", timeout=60)
    assert json.loads(corral("status", "pr1", "--json").stdout)[0]["state"] == "SUCCESS"
