"""`user:` on a process or a task: a root supervisor runs it as that user (uid, gid, groups,
HOME/USER/LOGNAME); its sandbox and logs are that user's while the task directory stays
root's and private; `corral kill` still kills it; anyone but root is refused at load."""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
from pathlib import Path

import pytest
from other_user import NOBODY, as_nobody, shared_root

__all__ = ["shared_root"]  # a fixture, used by name

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")


def _owner(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def test_a_process_runs_as_its_user_with_its_files(corral, spec_file) -> None:
    spec = spec_file(
        "name: u\n"
        "processes:\n"
        "  - name: as_nobody\n"
        "    user: nobody\n"
        "    cmd: 'id -u; id -g; echo $USER $LOGNAME $HOME; touch made; echo via-path > /dev/stderr'\n"
        "  - name: as_root\n"
        "    cmd: 'id -u'\n"
    )
    corral("run", str(spec), "--id", "u", check=True)
    task, logs = corral.root / "u", corral.root / "u" / "logs"
    out = (logs / "as_nobody.0.stdout").read_text().split("\n")
    home = os.path.expanduser("~nobody")
    assert out[:3] == [str(NOBODY), str(NOBODY), f"nobody nobody {home}"]
    assert (logs / "as_nobody.0.stderr").read_text() == "via-path\n"
    assert (logs / "as_root.0.stdout").read_text() == "0\n"
    # the run's own files are its user's; the task directory stays root's and private
    assert _owner(task / "sandbox" / "made") == (NOBODY, NOBODY)
    assert _owner(task / "sandbox") == (NOBODY, NOBODY)
    assert _owner(logs / "as_nobody.0.stdout") == (NOBODY, NOBODY)
    assert _owner(logs / "as_root.0.stdout") == (0, 0)
    for private in (task, logs, task / "journal"):
        assert _owner(private) == (0, 0) and stat.S_IMODE(os.lstat(private).st_mode) & 0o077 == 0


def test_a_task_user_applies_to_every_job_of_an_ensemble(corral, spec_file) -> None:
    spec = spec_file("name: e\njob:\n  user: nobody\n  cmd: 'id -u > uid'\nparams:\n  x: [1, 2]\n")
    corral("run", str(spec), "--id", "e", check=True)
    for job in (0, 1):
        sandbox = corral.root / "e" / "jobs" / str(job)
        assert (sandbox / "uid").read_text() == f"{NOBODY}\n"
        assert _owner(sandbox / "uid") == (NOBODY, NOBODY)


def _running(view: dict | None) -> dict | None:
    runs = [r for p in (view or {}).get("processes", []) for r in p["runs"]]
    return next((r for r in runs if r["state"] == "RUNNING" and r.get("pid")), None)


def test_kill_kills_a_run_of_another_user(corral, spec_file) -> None:
    spec = spec_file("name: k\nuser: nobody\nprocesses:\n  - name: long\n    cmd: 'exec tail -f /dev/null'\n")
    sup = corral.start("run", str(spec), "--id", "k")
    try:
        run = corral.wait_for(lambda: _running(corral.view("k")), timeout=60)
        pid = run["pid"]
        assert os.stat(f"/proc/{pid}").st_uid == NOBODY
        assert corral("kill", "k").returncode == 0
        assert sup.wait(timeout=60) == 3
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
    assert corral.status("k")["state"] == "KILLED"
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_an_unknown_user_fails_its_run_with_one_line(corral, spec_file) -> None:
    spec = spec_file("name: n\nprocesses:\n  - name: a\n    user: no-such-user-x\n    cmd: 'true'\n")
    result = corral("run", str(spec), "--id", "n")
    assert result.returncode == 1
    err = (corral.root / "n" / "logs" / "a.0.stderr").read_text()
    assert err == "corral: cannot start '/bin/sh': no user 'no-such-user-x' on this host\n"


@pytest.mark.parametrize("name", ["-rf", "a b", "x" * 40, "", "r\u00f6ot", "a\nb"])
def test_a_bad_user_name_is_refused_at_load(corral, spec_file, name: str) -> None:
    spec = spec_file(f"name: b\nprocesses:\n  - name: a\n    user: {json.dumps(name)}\n    cmd: 'true'\n")
    result = corral("run", str(spec), "--id", "b")
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and "processes[0].user" in line and "Traceback" not in line
    assert not (corral.root / "b").exists()


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("name: t\nuser: root\nprocesses:\n  - name: a\n    cmd: 'true'\n", "user"),
        ("name: t\nprocesses:\n  - name: a\n    user: root\n    cmd: 'true'\n", "processes[0].user"),
        ("name: e\njob:\n  cmd: 'true'\n  user: root\nparams:\n  x: [1]\n", "job.user"),
    ],
)
def test_a_supervisor_that_is_not_root_refuses_user(corral, shared_root: Path, text: str, path: str) -> None:
    from corral.cli.main import cli

    spec = shared_root.parent / "spec.yaml"
    spec.write_text(text)
    spec.chmod(0o644)

    def command() -> int:
        with contextlib.redirect_stdout(io.TextIOWrapper(io.BytesIO())):
            cli.main(["--root", str(shared_root), "run", str(spec), "--id", "t"], prog_name="corral")
        return 0

    code, err = as_nobody(command)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and f"{spec}: {path}: " in err and "root" in err, err
    assert list(shared_root.iterdir()) == []
