"""A task's files are private to its owner, never written through a symlink, and another
user gets one line (never a traceback) and cannot hold the writer's lock."""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import io
import json
import os
from pathlib import Path

import pytest
from other_user import NOBODY, as_nobody, shared_root

from file_modes import mode, regular_files

__all__ = ["shared_root"]  # a fixture, used by name


pytestmark = pytest.mark.usefixtures("umask_022")


def test_a_task_is_private_under_umask_022(corral) -> None:
    corral("simplerun", "--id", "t", "--", "sh", "-c", "echo out; echo err >&2", check=True)
    task = corral.root / "t"
    assert mode(task) == 0o700 and mode(task / "logs") == 0o700
    names = {p.name for p in regular_files(task)}
    assert {"journal", "journal.lock", "reaper.log", "simple.0.stdout", "simple.0.stderr"} <= names
    assert {p.name: mode(p) for p in regular_files(task)} == {n: 0o600 for n in names}


def test_a_detached_ensemble_is_private_too(corral, spec_file) -> None:
    spec = spec_file("name: e\njob:\n  cmd: 'true'\nparams:\n  x: [1, 2]\n")
    out = corral("run", str(spec), "--id", "e", "--detach", check=True)
    assert "supervised by pid" in out.stdout
    corral.wait_for(lambda: corral.status("e")["state"] == "SUCCESS")
    task = corral.root / "e"
    assert {"supervisor.log", "status.json"} <= {p.name for p in regular_files(task)}
    assert all(mode(p) == 0o600 for p in regular_files(task)), {
        str(p): oct(mode(p)) for p in regular_files(task)
    }
    assert all(mode(p) == 0o700 for p in [task, *[d for d in task.rglob("*") if d.is_dir()]])


def test_group_readable_shares_with_the_group_but_never_the_lock(corral) -> None:
    corral("simplerun", "--group-readable", "--id", "g", "--", "echo", "hi", check=True)
    task = corral.root / "g"
    assert mode(task) == 0o750 and mode(task / "logs") == 0o750
    modes = {p.name: mode(p) for p in regular_files(task)}
    assert modes.pop("journal.lock") == 0o600
    assert set(modes.values()) == {0o640}, modes


def test_a_symlinked_logs_directory_is_refused_and_nothing_written(corral, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (corral.root / "t").mkdir()
    (corral.root / "t" / "logs").symlink_to(elsewhere)
    result = corral("simplerun", "--id", "t", "--", "echo", "hi")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "symbolic link" in result.stderr
    assert list(elsewhere.iterdir()) == []
    assert not (corral.root / "t" / "journal").exists()


def test_a_symlinked_log_file_never_gets_the_output(corral, tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    logs = corral.root / "t" / "logs"
    logs.mkdir(parents=True)
    (logs / "simple.0.stdout").symlink_to(target)
    corral("simplerun", "--id", "t", "--", "echo", "hi")
    assert target.read_text() == "keep me\n"
    assert corral.status("t")["state"] == "FAILED"


# -- another user ---------------------------------------------------------------------------


def test_another_user_cannot_hold_the_writer_lock(corral, shared_root: Path) -> None:
    corral("simplerun", "--id", "t", "--", "true", check=True)
    lock = shared_root / "t" / "journal.lock"

    def take() -> int:
        fd = os.open(lock, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return 0

    code, err = as_nobody(take)
    assert code != 0 and "PermissionError" in err
    # even with the directory opened up by hand, the lock file itself stays the owner's
    (shared_root / "t").chmod(0o755)
    code, err = as_nobody(take)
    assert code != 0 and "PermissionError" in err


def test_the_group_sees_whether_a_shared_task_is_supervised(corral, shared_root: Path) -> None:
    # the lock is 0600 even in a shared task: the group asks the kernel's list of flocks
    cli = importlib.import_module("corral.cli.main").cli
    corral("simplerun", "--group-readable", "--id", "g", "--", "true", check=True)
    for path in [shared_root / "g", *(shared_root / "g").rglob("*")]:
        os.chown(path, -1, NOBODY, follow_symlinks=False)
    out = shared_root.parent / "status.json"

    def command() -> int:
        with open(out, "w") as f, contextlib.redirect_stdout(f):
            cli.main(["--root", str(shared_root), "status", "g", "--json"], prog_name="corral")
        return 0

    out.touch()
    out.chmod(0o666)
    code, err = as_nobody(command)
    assert code == 0, err
    views = json.loads(out.read_text())
    assert [(v["id"], v["state"], v["supervised"]) for v in views] == [("g", "SUCCESS", False)]


@pytest.mark.parametrize(
    "args",
    [
        ["status", "--json"],
        ["status", "t", "--json"],
        ["read", "t"],
        ["tail", "t"],
        ["kill", "t"],
        ["recover", "t"],
    ],
)
def test_another_user_gets_one_line(corral, shared_root: Path, args: list[str]) -> None:
    cli = importlib.import_module("corral.cli.main").cli

    corral("simplerun", "--id", "t", "--", "true", check=True)

    def command() -> int:
        sys_stdout = io.TextIOWrapper(io.BytesIO())  # like a real stdout: it has .buffer
        with contextlib.redirect_stdout(sys_stdout):
            cli.main(["--root", str(shared_root), *args], prog_name="corral")
        return 0

    code, err = as_nobody(command)
    assert "Traceback" not in err, err
    if args[0] == "status":  # the other user's private task is simply not listed
        assert code == 0, err
        return
    assert code == 2 and len(err.strip().splitlines()) == 1, err
