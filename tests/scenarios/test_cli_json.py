"""`--json` on every command that reports: one JSON object on stdout, shape as in the README."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

TASK = """
name: j
processes:
  - {name: main, cmd: "cat FIFO > /dev/null"}
"""

ENSEMBLE = """
name: e
job:
  cmd: "cat FIFO > /dev/null"
params:
  i: [0]
"""


def _blocked(tmp_path: Path, spec_file, text: str):  # type: ignore[no-untyped-def]
    """A spec whose runs block until the fifo is written: alive as long as the test wants."""
    fifo = tmp_path / "release"
    os.mkfifo(fifo)
    return spec_file(text.replace("FIFO", str(fifo))), fifo


def _release(fifo: Path) -> None:
    """Every run reading the fifo now sees its end and exits 0."""
    fd = os.open(fifo, os.O_WRONLY)  # blocks until a reader is there: a run is alive
    os.close(fd)


def _one_object(stdout: str) -> dict:
    data = json.loads(stdout)
    assert isinstance(data, dict), stdout
    return data


def _started(corral, spec, task_id: str) -> None:  # type: ignore[no-untyped-def]
    out = corral("run", str(spec), "--id", task_id, "--detach", "--json", check=True)
    data = _one_object(out.stdout)
    assert data["id"] == task_id and isinstance(data["supervisor_pid"], int)


def _running(corral, task_id: str) -> bool:  # type: ignore[no-untyped-def]
    view = corral.view(task_id)
    if view is None:
        return False
    if view["kind"] == "ensemble":
        return view["jobs"]["running"] > 0
    runs = view["processes"][0]["runs"]
    return bool(runs) and runs[-1]["state"] == "RUNNING"


def test_run_json_reports_the_final_state(corral, spec_file):
    spec = spec_file("name: ok\nprocesses:\n  - {name: a, cmd: 'true'}\n")
    result = corral("run", str(spec), "--id", "r1", "--json")
    assert result.returncode == 0, result.stderr
    assert _one_object(result.stdout) == {"id": "r1", "kind": "task", "state": "SUCCESS", "exit_status": 0}


def test_run_json_of_a_failed_ensemble_keeps_the_exit_status(corral, spec_file):
    spec = spec_file("name: e\njob: {cmd: 'exit 1'}\nparams: {i: [0, 1]}\n")
    result = corral("run", str(spec), "--id", "r2", "--json", "-q")
    assert result.returncode == 1
    data = _one_object(result.stdout)
    assert data["state"] == "FAILED" and data["exit_status"] == 1 and data["kind"] == "ensemble"
    assert data["jobs"]["failed"] == 2 and data["jobs"]["total"] == 2


def test_simplerun_json(corral):
    result = corral("simplerun", "--id", "s1", "--json", "--", "true")
    assert _one_object(result.stdout)["state"] == "SUCCESS"


def test_kill_json_reports_the_state_after_the_kill(corral, spec_file, tmp_path):
    spec, _ = _blocked(tmp_path, spec_file, TASK)
    _started(corral, spec, "k1")
    corral.wait_for(lambda: _running(corral, "k1"), timeout=60)
    result = corral("kill", "k1", "--json")
    assert result.returncode == 0, result.stderr
    assert _one_object(result.stdout) == {"id": "k1", "op": "kill", "job": None, "state": "KILLED"}


def test_lose_json(corral, spec_file, tmp_path):
    spec, _ = _blocked(tmp_path, spec_file, TASK)
    _started(corral, spec, "l1")
    corral.wait_for(lambda: _running(corral, "l1"), timeout=60)
    result = corral("lose", "l1", "--json")
    assert result.returncode == 0, result.stderr
    assert _one_object(result.stdout) == {"id": "l1", "op": "lose", "job": None, "state": "LOST"}


def test_pause_and_resume_json(corral, spec_file, tmp_path):
    spec, fifo = _blocked(tmp_path, spec_file, TASK)
    _started(corral, spec, "p1")
    corral.wait_for(lambda: _running(corral, "p1"), timeout=60)
    for op in ("pause", "resume"):
        result = corral(op, "p1", "main", "--json")
        assert result.returncode == 0, result.stderr
        assert _one_object(result.stdout) == {
            "id": "p1",
            "op": op,
            "job": None,
            "process": "main",
            "supervised": True,
        }
    _release(fifo)
    corral.wait_for(lambda: corral.status("p1")["state"] == "SUCCESS", timeout=60)


def test_pause_json_without_a_supervisor(corral, spec_file, tmp_path):
    spec, _ = _blocked(tmp_path, spec_file, TASK)
    sup = corral.start("run", str(spec), "--id", "p2")
    corral.wait_for(lambda: _running(corral, "p2"), timeout=60)
    os.kill(sup.pid, signal.SIGKILL)
    sup.wait(timeout=30)
    result = corral("pause", "p2", "--json")
    assert result.returncode == 0, result.stderr
    assert _one_object(result.stdout)["supervised"] is False


def test_recover_json(corral, spec_file, tmp_path):
    spec, fifo = _blocked(tmp_path, spec_file, TASK)
    sup = corral.start("run", str(spec), "--id", "rc1")
    corral.wait_for(lambda: _running(corral, "rc1"), timeout=60)
    os.kill(sup.pid, signal.SIGKILL)
    sup.wait(timeout=30)
    recovering = corral.start("recover", "rc1", "--json")
    assert recovering.stderr is not None
    counts = recovering.stderr.readline()  # written once the live run is re-attached
    assert counts.startswith("rc1: 1 re-attached"), counts
    _release(fifo)
    out, err = recovering.communicate(timeout=60)
    assert recovering.returncode == 0, err
    data = _one_object(out)
    assert data["state"] == "SUCCESS" and data["exit_status"] == 0
    assert data["recovered"] == {"attached": 1, "recovered": 0, "lost": 0}


def test_submit_and_wait_json(corral, spec_file, tmp_path):
    spec, fifo = _blocked(tmp_path, spec_file, ENSEMBLE)
    _started(corral, spec, "w1")
    corral.wait_for(lambda: _running(corral, "w1"), timeout=60)
    submitted = corral("submit", "--ensemble", "w1", "--set", "i=7", "--json")
    assert submitted.returncode == 0, submitted.stderr
    assert _one_object(submitted.stdout) == {"id": "w1", "jobs": [1]}
    corral.wait_for(lambda: corral.status("w1")["jobs"]["running"] == 2, timeout=60)
    _release(fifo)
    waited = corral("wait", "0", "1", "--ensemble", "w1", "--json", timeout=60)
    assert waited.returncode == 0, waited.stderr
    assert _one_object(waited.stdout) == {
        "id": "w1",
        "ok": True,
        "jobs": [{"job": 0, "state": "SUCCESS"}, {"job": 1, "state": "SUCCESS"}],
    }


@pytest.mark.parametrize("op", ["kill", "lose", "pause", "resume"])
def test_json_errors_stay_one_line_on_stderr(corral, op):
    result = corral(op, "no-such-task", "--json")
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
