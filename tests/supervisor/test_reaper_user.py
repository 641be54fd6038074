"""The reaper's path for a run with a `user:` (fork, set ids, exec): the same promises as
posix_spawn's (own session, default signals, no reaper descriptors, F on failure) plus the
user's uid, gid, supplementary groups and environment, and log files that are the user's."""

from __future__ import annotations

import os
import pwd
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_reaper import Rig, bit

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
NOBODY = pwd.getpwnam("nobody")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    tmp_path.chmod(0o700)  # private, like a task directory: the run must not need to enter it
    r = Rig(tmp_path)
    yield r
    r.cleanup()


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def test_a_user_run_has_the_users_ids_groups_and_a_session_of_its_own(rig: Rig, tmp_path: Path) -> None:
    key = (0, "u", 0)
    rig.spawn(key, ["tail", "-f", "/dev/null"], cwd=tmp_path / "sandbox", user="nobody")
    pid = rig.event("S", key)[4]
    status = _status(pid)
    assert status["Uid"].split() == [str(NOBODY.pw_uid)] * 4
    assert status["Gid"].split() == [str(NOBODY.pw_gid)] * 4
    expected = {g.gr_gid for g in __import__("grp").getgrall() if "nobody" in g.gr_mem} | {NOBODY.pw_gid}
    assert set(map(int, status["Groups"].split())) <= expected and "0" not in status["Groups"].split()
    assert os.getsid(pid) == pid == os.getpgid(pid)
    ignored = int(status["SigIgn"], 16)
    for sig in (signal.SIGPIPE, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        assert not ignored & bit(sig), f"{sig!r} left ignored"
    reapers = {os.readlink(f"/proc/{rig.spawner.pid}/fd/{fd}") for fd in (3, 4)} | {str(rig.ledger)}
    held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    assert not held & reapers
    assert os.stat(tmp_path / "sandbox").st_uid == NOBODY.pw_uid
    os.killpg(pid, signal.SIGTERM)
    assert rig.event("E", key)[5] == -signal.SIGTERM


def test_a_user_runs_environment_and_log_files_are_its_own(rig: Rig) -> None:
    key = (0, "env", 0)
    script = 'echo "$HOME $USER $LOGNAME $KEPT"; echo by-path > /dev/stderr'
    run_dir = rig.spawn(key, ["/bin/sh", "-c", script], env={"KEPT": "k", "USER": "root"}, user="nobody")
    assert rig.event("E", key)[5] == 0
    assert (run_dir / "stdout").read_text() == f"{NOBODY.pw_dir} nobody nobody k\n"
    assert (run_dir / "stderr").read_text() == "by-path\n"
    assert {os.stat(run_dir / name).st_uid for name in ("stdout", "stderr")} == {NOBODY.pw_uid}


def test_a_user_run_that_cannot_exec_fails_with_F(rig: Rig, tmp_path: Path) -> None:
    private = tmp_path / "root-only.sh"
    private.write_text("#!/bin/sh\necho never\n")
    private.chmod(0o700)  # root may run it, nobody may not
    key = (0, "denied", 0)
    run_dir = rig.spawn(key, [str(private)], user="nobody")
    reason = rig.event("F", key)[4]
    assert reason == f"cannot start {str(private)!r}: Permission denied"
    assert (run_dir / "stderr").read_text() == f"corral: {reason}\n"
    assert rig.line("S", key) is None
    ok = (0, "next", 0)  # the reaper goes on
    rig.spawn(ok, ["true"], user="nobody")
    assert rig.event("E", ok)[5] == 0


def test_an_unknown_user_fails_with_F_and_the_reaper_goes_on(rig: Rig) -> None:
    key = (0, "nouser", 0)
    rig.spawn(key, ["true"], user="corral-no-such-user")
    assert rig.event("F", key)[4] == "cannot start 'true': no user 'corral-no-such-user' on this host"
