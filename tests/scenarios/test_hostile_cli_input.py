"""A hostile or careless user at the real CLI: specs and arguments corral cannot record, and
numbers far past what anyone means. Each is one line on stderr, exit status 2, no traceback,
and nothing under the root; or, for numbers that are legal, a supervisor that carries on."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

ONE = 'name: one\nprocesses: [{name: a, cmd: "true"}]\n'
BIG = 10**26

BAD_SPECS = {
    "deep": ("name: x\nprocesses: " + "[" * 50_000 + "]" * 50_000, "nested too deeply"),
    "huge_int": (
        f'name: x\nprocesses: [{{name: a, cmd: "true", max_failures: {BIG}}}]',
        "processes[0].max_failures",
    ),
    "huge_size": (
        'name: x\nresources: {memory: 9999999999999999TB}\nprocesses: [{name: a, cmd: "true"}]',
        "resources.memory",
    ),
    "huge_param": (f'name: x\njob: {{cmd: "echo {{{{params.a}}}}"}}\nparams: {{a: [{BIG}]}}', "params.a[0]"),
    "surrogate": ('name: x\nprocesses: [{name: a, cmd: "echo \\udcff"}]', "processes[0].cmd"),
    "nul": ('name: x\nprocesses: [{name: a, cmd: "echo a\\0b"}]', "processes[0].cmd"),
    "too_many_jobs": (
        'name: x\njob: {cmd: "true"}\nparams: {a: {range: [10000000000]}, b: {range: [10000000000]}}',
        "params: makes 100000000000000000000 jobs",
    ),
    "retries": ('name: x\njob: {cmd: "true"}\nretries: 100000', "retries: must be <= 65000"),
}


def _refused(result, needle: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
@pytest.mark.parametrize("command", ["run", "inspect"])
def test_a_spec_corral_cannot_record_is_one_line_and_nothing_is_made(corral, spec_file, case, command):
    text, needle = BAD_SPECS[case]
    spec = spec_file(text, name=f"{case}.yaml")
    _refused(corral(command, str(spec), "--id", "bad"), needle)
    assert f"{case}.yaml" in corral(command, str(spec), "--id", "bad").stderr
    assert not (corral.root / "bad").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--set", "x=caf\udce9"],  # a Latin-1 byte from the shell, e.g. a file name: --set x=$(ls)
        ["-P", "p\udcff=80"],
    ],
)
def test_an_argument_that_is_not_utf8_is_refused_before_anything_is_recorded(corral, spec_file, args):
    spec = spec_file('name: x\nprocesses: [{name: a, cmd: "echo {{params.x}}"}]\n')
    _refused(corral("run", str(spec), "--id", "latin", "--set", "x=1", *args), "not valid UTF-8")
    assert not (corral.root / "latin").exists()


def test_a_spec_under_a_path_that_is_not_utf8_is_refused(corral, tmp_path: Path):
    where = tmp_path / "caf\udce9"  # the directory is the byte 0xe9: a Latin-1 'é'
    where.mkdir()
    (where / "one.yaml").write_text(ONE)
    _refused(corral("run", str(where / "one.yaml"), "--id", "one"), "not valid UTF-8")
    assert not (corral.root / "one").exists()


def test_a_root_that_is_not_utf8_is_one_line(corral, spec_file, tmp_path: Path):
    root = tmp_path / "root\udcff"
    spec = spec_file(ONE)
    for args in (["run", str(spec), "--id", "one"], ["status"], ["read", "one"]):
        result = corral("--root", str(root), *args)
        _refused(result, "not valid UTF-8")
    assert not root.exists()


def test_a_kill_grace_of_1e300_seconds_kills_and_the_supervisor_carries_on(corral, spec_file, gate):
    """The TERM-to-KILL deadline, 1e300 s away, overflowed poll()'s time_t: the supervisor died
    with a traceback in the middle of the kill and left the task CLEANING."""
    hold = gate()
    spec = spec_file(
        f"name: g\nkill_grace: 1e300\nfinalization_wait: 1e300\n"
        f"processes: [{{name: a, cmd: '{hold.cmd}', timeout: 1e300, max_failures: 0}}]\n"
    )
    corral("run", str(spec), "--id", "grace", "--detach", check=True)
    corral.wait_for(lambda: _state_of(corral, "grace", "a") == "RUNNING", timeout=120)
    killed = corral("kill", "grace", timeout=300)
    assert killed.returncode == 0 and "grace: KILLED" in killed.stdout, killed.stderr
    assert "Traceback" not in (corral.root / "grace" / "supervisor.log").read_text()


def _state_of(corral, task_id: str, process: str) -> str | None:  # type: ignore[no-untyped-def]
    view = corral.view(task_id)
    for proc in (view or {}).get("processes", []):
        if proc["name"] == process and proc["runs"]:
            return str(proc["runs"][-1]["state"])
    return None


def test_a_job_retried_more_than_1024_times_neither_crashes_the_supervisor_nor_recover(corral, spec_file):
    """The backoff was retry_backoff * 2 ** (attempt - 1) as an int: at attempt 1025 it no longer
    converted to a float, and every fold of the journal (run, status, recover) raised."""
    spec = spec_file('name: r\njob: {cmd: "exit 1"}\nretries: 1030\nretry_backoff: 0\n')
    result = corral("run", str(spec), "--id", "retry", "-q", timeout=900)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    view = corral.status("retry")
    assert view["state"] == "FAILED" and view["jobs"]["failed"] == 1
    listed = json.loads(corral("status", "retry", "--jobs", "--json", check=True).stdout)
    assert listed[0]["job_list"][0]["attempts"] == 1031


def test_a_run_racing_another_run_of_the_same_id_is_not_told_to_force_a_recover(corral, spec_file):
    """Two `run --id X` at once: the loser found no records yet, then lost the lock to the
    winner. It said "use 'corral recover --force' to take over", which kills the winner."""
    task = corral.root / "race"
    task.mkdir(mode=0o700, parents=True)
    (task / "journal").touch(mode=0o600)  # the winner created it and holds the lock ...
    fd = os.open(task / "journal.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"{os.getpid()}\n".encode())
        result = corral("run", str(spec_file(ONE)), "--id", "race")  # ... not its first record yet
        _refused(result, f"race: a task with this id is being started by pid {os.getpid()}")
        assert "recover" not in result.stderr
    finally:
        os.close(fd)
    assert (task / "journal").stat().st_size == 0, "the loser wrote nothing"


def test_status_jobs_with_a_state_that_is_no_state_is_one_line(corral, spec_file):
    """`--state succeeded` (the word the DETAIL column uses) was a ValueError traceback."""
    spec = spec_file('name: e\njob: {cmd: "true"}\nparams: {a: [1, 2]}\n')
    corral("run", str(spec), "--id", "ens", "-q", check=True)
    for typo in ("succeeded", "fail", "BOGUS"):
        _refused(corral("status", "ens", "--jobs", "--state", typo), f"--state {typo}: not a job state")
    listed = corral("status", "ens", "--jobs", "--state", "Success", check=True).stdout
    assert "a=1" in listed and "a=2" in listed
