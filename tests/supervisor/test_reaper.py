"""The reaper and the supervisor's end of it (Spawner, Ledger), with real processes.

Most tests drive a real reaper through `Spawner` from this process (its parent, as the
supervisor would be); the last one goes through the real CLI and SIGKILLs a task's reaper.
"""

from __future__ import annotations

import os
import select
import signal
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.supervisor import reaper
from corral.supervisor.spawn import Ledger, RunKey, Spawner


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def proc_start_ticks(pid: int) -> int:
    """Field 22 of /proc/PID/stat, read independently of the code under test."""
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return int(data[data.rindex(b")") + 2 :].split()[19])


def sig_ignored(pid: int | str) -> int:
    """The SigIgn mask of /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigIgn line")


def bit(sig: int) -> int:
    return 1 << (sig - 1)


class Rig:
    """A real reaper started by a Spawner, with helpers to spawn runs and wait for events."""

    def __init__(self, base: Path, env: dict[str, str] | None = None, console: bool = False) -> None:
        self.base = base
        self.ledger = base / "reaper.log"
        self.spawner = Spawner(str(self.ledger), dict(os.environ) if env is None else env, console)
        self.backlog: list[Any] = []
        self.pids: list[int] = []
        self.reaped: int | None = None  # the reaper's wait status, once reaped

    def spawn(
        self,
        key: RunKey,
        argv: list[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stdout: str | None = "",
        stderr: str | None = "",
        user: str | None = None,
    ) -> Path:
        """Queue and send one request; stdout/stderr default to files in a directory of the
        run's own, made here (the supervisor makes the log directory, not the reaper)."""
        job, process, run = key
        run_dir = self.base / "logs" / f"{job}.{process}.{run}"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.spawner.spawn(
            key,
            argv,
            env or {},
            str(cwd or self.base),
            str(run_dir / "stdout") if stdout == "" else stdout,
            str(run_dir / "stderr") if stderr == "" else stderr,
            user,
        )
        assert self.spawner.flush()
        return run_dir

    def event(self, kind: str, key: RunKey, timeout: float = 5.0) -> tuple[Any, ...]:
        """The next event of this kind for this run (others stay in the backlog)."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.backlog:
                if ev[0] == kind and (ev[1], ev[2], ev[3]) == key:
                    self.backlog.remove(ev)
                    if kind == "S":
                        self.pids.append(ev[4])
                    return tuple(ev)
            left = deadline - time.monotonic()
            if left <= 0 or self.spawner.eof:
                raise AssertionError(f"no {kind} event for {key}; got {self.backlog}")
            select.select([self.spawner.fileno()], [], [], left)
            self.backlog += self.spawner.events()

    def lines(self) -> list[list[str]]:
        if not self.ledger.exists():
            return []
        return [line.split("\t") for line in self.ledger.read_text().splitlines()]

    def line(self, kind: str, key: RunKey) -> list[str] | None:
        for fields in self.lines():
            if fields[0] == kind and (int(fields[1]), fields[2], int(fields[3])) == key:
                return fields
        return None

    def poll_exit(self) -> int | None:
        """The reaper's wait status if it has exited (reaping it), else None."""
        if self.reaped is None:
            pid, status = os.waitpid(self.spawner.pid, os.WNOHANG)
            if pid:
                self.reaped = status
        return self.reaped

    def wait_exit(self, timeout: float = 5.0) -> int:
        wait_until(lambda: self.poll_exit() is not None, timeout)
        assert self.reaped is not None
        return self.reaped

    def cleanup(self) -> None:
        self.spawner.detach()
        for pid in self.pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.poll_exit() is None:
            try:
                self.wait_exit(2.0)
            except AssertionError:
                os.kill(self.spawner.pid, signal.SIGKILL)
                self.wait_exit(2.0)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.cleanup()


# -- 1. round trip ---------------------------------------------------------------------------


def test_round_trip_exit_status_events_and_ledger(rig: Rig) -> None:
    key = (0, "main", 0)
    rig.spawn(key, ["/bin/sh", "-c", "exit 3"])
    s = rig.event("S", key)
    pid = s[4]
    assert pid > 0 and pid != rig.spawner.pid
    e = rig.event("E", key)
    assert e[:6] == ("E", 0, "main", 0, pid, 3)
    assert e[6] >= s[6]
    kinds = [f[0] for f in rig.lines()]
    assert kinds == ["R", "S", "E"], rig.lines()
    s_line, e_line = rig.line("S", key), rig.line("E", key)
    assert s_line is not None and e_line is not None
    assert s_line[4:7] == [str(pid), str(s[5]), str(rig.spawner.pid)]
    assert e_line[4:6] == [str(pid), "3"]
    # the run's own files were used: stdout/stderr were created
    run_dir = rig.base / "logs" / "0.main.0"
    assert (run_dir / "stdout").exists() and (run_dir / "stderr").exists()


def test_start_ticks_equal_proc_stat_field_22(rig: Rig) -> None:
    keys = [(0, "sleep", n) for n in range(5)]
    for key in keys:
        rig.spawn(key, ["sleep", "5"])
    for key in keys:
        _, _, _, _, pid, ticks, _ = rig.event("S", key)
        assert ticks == proc_start_ticks(pid), (key, ticks)
        assert rig.line("S", key)[5] == str(ticks)  # type: ignore[index]


# -- 2. signals ------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_reports_negative_signal(rig: Rig, sig: int) -> None:
    key = (0, "victim", 0)
    rig.spawn(key, ["sleep", "30"])
    pid = rig.event("S", key)[4]
    os.kill(pid, sig)
    assert rig.event("E", key)[5] == -sig
    assert rig.line("E", key)[5] == str(-sig)  # type: ignore[index]


# -- 3. what a run inherits ------------------------------------------------------------------


def test_runs_get_default_signal_dispositions(rig: Rig) -> None:
    key = (0, "status", 0)
    run_dir = rig.spawn(key, ["grep", "^SigIgn:", "/proc/self/status"])
    assert rig.event("E", key)[5] == 0
    # the reaper (Python, now set up) ignores SIGPIPE and the terminal's signals: runs must not
    ignored = sig_ignored(rig.spawner.pid)
    for sig in (signal.SIGPIPE, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        assert ignored & bit(sig), f"premise: the reaper ignores {sig!r}"
    out = (run_dir / "stdout").read_text()
    assert out.startswith("SigIgn:"), out
    mask = int(out.split()[1], 16)
    for sig in (signal.SIGPIPE, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        assert not mask & bit(sig), f"{sig!r} left ignored in the run: {out}"


def test_runs_are_session_leaders_without_the_reapers_fds(rig: Rig) -> None:
    key = (0, "leader", 0)
    rig.spawn(key, ["sleep", "30"])
    pid = rig.event("S", key)[4]
    assert os.getsid(pid) == pid
    assert os.getpgid(pid) == pid
    assert os.getsid(rig.spawner.pid) == rig.spawner.pid != os.getsid(0)

    def targets(p: int) -> set[str]:
        out = set()
        for fd in os.listdir(f"/proc/{p}/fd"):
            try:
                out.add(os.readlink(f"/proc/{p}/fd/{fd}"))
            except OSError:
                pass
        return out

    reapers = {os.readlink(f"/proc/{rig.spawner.pid}/fd/{fd}") for fd in (3, 4)}
    reapers.add(str(rig.ledger))
    leaked = targets(pid) & reapers
    assert not leaked, f"the run holds the reaper's pipes or ledger: {leaked}"


def test_console_runs_write_to_the_supervisors_streams(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    r = Rig(tmp_path, console=True)
    try:
        key = (0, "console", 0)
        r.spawn(key, ["/bin/sh", "-c", "echo to-out; echo to-err >&2"], stdout=None, stderr=None)
        assert r.event("E", key)[5] == 0
    finally:
        r.cleanup()
    out, err = capfd.readouterr()
    assert "to-out" in out and "to-err" in err


# -- 4. spawn failure ------------------------------------------------------------------------


@pytest.mark.parametrize("program", ["corral-no-such-program", "/nonexistent/corral-prog"])
def test_spawn_failure_reports_F_and_writes_stderr(rig: Rig, program: str) -> None:
    key = (2, "broken", 1)
    run_dir = rig.spawn(key, [program, "arg"])
    f = rig.event("F", key)
    assert program in f[4] and "cannot start" in f[4], f
    err = (run_dir / "stderr").read_text()
    assert err.startswith("corral: cannot start") and program in err, err
    line = rig.line("F", key)
    assert line is not None and program in line[4]
    assert rig.line("S", key) is None
    # the reaper is still fine: the next run starts
    ok = (2, "broken", 2)
    rig.spawn(ok, ["true"])
    assert rig.event("E", ok)[5] == 0


# -- 5. environment --------------------------------------------------------------------------


def test_env_overlay_on_top_of_the_reapers_environment(tmp_path: Path) -> None:
    base = {"PATH": os.environ.get("PATH", os.defpath), "BASE_ONLY": "b", "SHARED": "from-base"}
    os.environ["CORRAL_TEST_NOT_IN_BASE"] = "leak"
    try:
        r = Rig(tmp_path, env=base)
    finally:
        del os.environ["CORRAL_TEST_NOT_IN_BASE"]
    try:
        key = (0, "env", 0)
        script = 'echo "$BASE_ONLY|$SHARED|$RUN_ONLY|${CORRAL_TEST_NOT_IN_BASE-unset}"'
        run_dir = r.spawn(key, ["/bin/sh", "-c", script], env={"SHARED": "from-run", "RUN_ONLY": "r"})
        assert r.event("E", key)[5] == 0
        assert (run_dir / "stdout").read_text() == "b|from-run|r|unset\n"
        # the overlay of one run does not stick to the next
        key2 = (0, "env", 1)
        run_dir2 = r.spawn(key2, ["/bin/sh", "-c", script])
        assert r.event("E", key2)[5] == 0
        assert (run_dir2 / "stdout").read_text() == "b|from-base||unset\n"
    finally:
        r.cleanup()


def test_runs_get_exactly_the_given_environment(tmp_path: Path) -> None:
    """Not the reaper's os.environ: Python's start-up under -I coerces a C locale by adding
    LC_CTYPE, which the supervisor (honouring PYTHONCOERCECLOCALE=0) does not have."""
    base = {"PATH": os.environ.get("PATH", os.defpath), "PYTHONCOERCECLOCALE": "0"}
    r = Rig(tmp_path, env=base)
    try:
        key = (0, "env", 0)
        run_dir = r.spawn(key, ["/usr/bin/env"])
        assert r.event("E", key)[5] == 0
        names = {line.partition("=")[0] for line in (run_dir / "stdout").read_text().splitlines()}
        assert names == {"PATH", "PYTHONCOERCECLOCALE"}
    finally:
        r.cleanup()


def test_path_in_the_overlay_finds_a_bare_program(rig: Rig, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    prog = bindir / "corral-test-tool"
    prog.write_text('#!/bin/sh\necho "tool ran with $1"\n')
    prog.chmod(prog.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    # a non-executable file of the same name earlier in PATH is skipped, as a shell would
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "corral-test-tool").write_text("not executable\n")
    path = f"{shadow}:{bindir}:{os.environ.get('PATH', os.defpath)}"
    key = (0, "tool", 0)
    run_dir = rig.spawn(key, ["corral-test-tool", "x"], env={"PATH": path})
    assert rig.event("E", key)[5] == 0
    assert (run_dir / "stdout").read_text() == "tool ran with x\n"
    # without the overlay's PATH the same name is not found
    key2 = (0, "tool", 1)
    rig.spawn(key2, ["corral-test-tool", "x"])
    assert "corral-test-tool" in rig.event("F", key2)[4]


# -- 6. directories --------------------------------------------------------------------------


def test_missing_cwd_is_created(rig: Rig, tmp_path: Path) -> None:
    cwd = tmp_path / "sandbox" / "a" / "b"  # missing, as are its parents
    key = (7, "proc", 3)
    run_dir = rig.spawn(key, ["pwd"], cwd=cwd)
    assert rig.event("E", key)[5] == 0
    assert cwd.is_dir()
    assert (run_dir / "stdout").read_text().strip() == str(cwd)
    # another run in the same directory, which now exists
    key2 = (7, "proc", 4)
    run_dir2 = rig.spawn(key2, ["pwd"], cwd=cwd)
    assert rig.event("E", key2)[5] == 0
    assert (run_dir2 / "stdout").read_text().strip() == str(cwd)


def test_missing_log_directory_is_a_spawn_failure(rig: Rig, tmp_path: Path) -> None:
    key = (0, "main", 0)
    missing = tmp_path / "no-such-dir"
    rig.spawn(key, ["true"], stdout=str(missing / "out"), stderr=str(missing / "err"))
    assert "No such file or directory" in rig.event("F", key)[4]
    assert rig.line("S", key) is None


# -- 7. the reaper's lifetime ----------------------------------------------------------------


def test_reaper_exits_when_requests_close_and_no_runs(rig: Rig) -> None:
    assert rig.poll_exit() is None
    rig.spawner.close()
    status = rig.wait_exit(2.0)
    assert os.waitstatus_to_exitcode(status) == 0
    wait_until(lambda: (rig.spawner.events(), rig.spawner.eof)[1], 2.0)


def test_reaper_outlives_closed_requests_while_a_run_lives(rig: Rig, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    key = (0, "held", 0)
    rig.spawn(key, ["/bin/sh", "-c", f'while [ ! -e "{gate}" ]; do sleep 0.01; done; exit 6'])
    rig.event("S", key)
    rig.spawner.close()
    time.sleep(0.1)
    assert rig.poll_exit() is None, "the reaper left with a run still alive"
    gate.touch()
    assert rig.event("E", key)[5] == 6
    assert os.waitstatus_to_exitcode(rig.wait_exit(2.0)) == 0


def test_detached_reaper_keeps_the_ledger_then_exits(rig: Rig, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    key = (1, "orphan", 0)
    rig.spawn(key, ["/bin/sh", "-c", f'while [ ! -e "{gate}" ]; do sleep 0.01; done; exit 5'])
    pid = rig.event("S", key)[4]
    rig.spawner.detach()  # the supervisor's side is gone: no one reads events any more
    time.sleep(0.1)
    assert rig.poll_exit() is None, "the reaper left with a run still alive"
    assert rig.line("E", key) is None
    gate.touch()
    line = wait_until(lambda: rig.line("E", key), 3.0)
    assert line[4:6] == [str(pid), "5"]
    # EPIPE on the event pipe did not kill it (it ignores SIGPIPE): a clean exit
    assert os.waitstatus_to_exitcode(rig.wait_exit(2.0)) == 0


# -- 8. Ledger -------------------------------------------------------------------------------


def test_ledger_torn_line_wanted_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "reaper.log"
    a, b, c = (0, "a", 0), (1, "b", 2), (0, "c", 0)
    with open(path, "w") as f:
        f.write("S\t0\ta\t0\t100\t2000\t99\t1.0\n")
        f.write("not a ledger line\n")
        f.write("S\t1\tb\t2\t101\t2001\t99\t1.0\n")
        f.write("F\t0\tc\t0\tcannot start 'x': nope\t1.0\n")
        f.write("E\t0\ta\t0\t100\t7")  # being written
    every = Ledger(str(path))
    only_a = Ledger(str(path), wanted={a})
    for ledger in (every, only_a):
        ledger.refresh()
        assert ledger.spawned[a] == (100, 2000, 99)
        assert a not in ledger.ended, "a torn last line must not be read"
    assert every.spawned[b] == (101, 2001, 99)
    assert every.failed[c] == "cannot start 'x': nope"
    assert b not in only_a.spawned and c not in only_a.failed
    with open(path, "a") as f:
        f.write("\t2.0\n")
        f.write("E\t1\tb\t2\t101\t-9\t2.0\n")
    for ledger in (every, only_a):
        ledger.refresh()
        assert ledger.ended[a] == 7
    assert every.ended[b] == -9
    assert b not in only_a.ended
    every.refresh()  # nothing new: nothing changes
    assert every.ended == {a: 7, b: -9}


def test_ledger_missing_file_is_empty(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path / "none.log"))
    ledger.refresh()
    assert ledger.status((0, "x", 0), 0.0, wait=1.0) is None
    assert (ledger.spawned, ledger.ended, ledger.failed) == ({}, {}, {})


def test_ledger_status_waits_for_a_live_reaper(rig: Rig, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    key = (0, "slow", 0)
    rig.spawn(key, ["/bin/sh", "-c", f'while [ ! -e "{gate}" ]; do sleep 0.01; done; exit 9'])
    rig.event("S", key)
    ledger = Ledger(str(rig.ledger))
    t0 = time.monotonic()
    assert ledger.status(key, 0.0, wait=0.1) is None  # still running: gives up after `wait`
    assert 0.1 <= time.monotonic() - t0 < 30  # gave up (the run only ends when the gate exists)
    gate.touch()
    assert ledger.status(key, 0.0, wait=5.0) == 9


def test_ledger_status_returns_quickly_when_the_reaper_is_dead(rig: Rig) -> None:
    key = (0, "stranded", 0)
    rig.spawn(key, ["sleep", "30"])
    rig.event("S", key)
    os.kill(rig.spawner.pid, signal.SIGKILL)
    assert os.WIFSIGNALED(rig.wait_exit(2.0))
    ledger = Ledger(str(rig.ledger))
    t0 = time.monotonic()
    assert ledger.status(key, 0.0, wait=120.0) is None
    assert time.monotonic() - t0 < 60  # did not sit out `wait`: a dead reaper will never answer
    assert key in ledger.spawned and key not in ledger.ended


# -- 9. pure functions -----------------------------------------------------------------------


def test_ticks_of() -> None:
    hz = reaper.HZ
    tick_ns = 1_000_000_000 // hz
    start = 12_345 * tick_ns
    assert reaper.ticks_of(start, start) == 12_345
    assert reaper.ticks_of(start, start + tick_ns - 1) == 12_345  # within one tick
    assert reaper.ticks_of(start + tick_ns - 1, start + tick_ns) is None  # across a boundary
    assert reaper.ticks_of(start, start + 10 * tick_ns) is None


def test_unframe_keeps_an_incomplete_frame() -> None:
    first = reaper.frame(("S", 0, "p", 0, 123, 456, 1.5))
    second = reaper.frame((0, "p", 1, ["sh", "-c", "true"], {"A": "b"}, "/", None, "/", None, None))
    buf = bytearray(first + second[:-1])
    assert reaper.unframe(buf) == [("S", 0, "p", 0, 123, 456, 1.5)]
    assert bytes(buf) == second[:-1]
    assert reaper.unframe(buf) == [] and bytes(buf) == second[:-1]
    buf += second[-1:]
    assert reaper.unframe(buf) == [(0, "p", 1, ["sh", "-c", "true"], {"A": "b"}, "/", None, "/", None, None)]
    assert buf == bytearray()
    partial_header = bytearray(first[:2])
    assert reaper.unframe(partial_header) == [] and bytes(partial_header) == first[:2]


# -- 10. through the CLI: the reaper SIGKILLed under a live supervisor -----------------------


def _runs(view: dict, name: str) -> list[dict]:
    return next(p["runs"] for p in view["processes"] if p["name"] == name)


def test_supervisor_survives_its_reaper(corral, spec_file, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gate = tmp_path / "gate"
    spec = spec_file(f"""
name: rk
processes:
  - {{name: work, cmd: "sleep 1; exit 4"}}
  - {{name: pre, cmd: 'while [ ! -e "{gate}" ]; do sleep 0.02; done'}}
  - {{name: next, cmd: "echo next", after: [pre]}}
max_failures: 0
""")
    ledger = corral.root / "rk1" / "reaper.log"

    def spawn_line(process: str) -> list[str] | None:
        if not ledger.exists():
            return None
        for line in ledger.read_text().splitlines():
            fields = line.split("\t")
            if fields[0] == "S" and fields[2] == process:
                return fields
        return None

    sup = corral.start("run", str(spec), "--id", "rk1")
    try:
        work = wait_until(lambda: spawn_line("work"), 10.0)
        old_reaper, work_pid = int(work[6]), int(work[4])
        os.kill(old_reaper, signal.SIGKILL)
        # the supervisor reaps its reaper; the run goes on, now a child of the supervisor
        wait_until(lambda: not Path(f"/proc/{old_reaper}").exists(), 5.0)
        assert Path(f"/proc/{work_pid}").exists(), "the run must outlive its reaper"
        wait_until(lambda: not Path(f"/proc/{work_pid}").exists(), 5.0)
        gate.touch()
        sup.wait(timeout=10)
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
    view = corral.status("rk1")
    work_runs = _runs(view, "work")
    assert len(work_runs) == 1
    assert (work_runs[0]["pid"], work_runs[0]["exit_code"], work_runs[0]["state"]) == (work_pid, 4, "FAILED")
    nxt = _runs(view, "next")
    assert nxt and nxt[-1]["state"] == "SUCCESS", view
    new_reaper = int(spawn_line("next")[6])  # type: ignore[index]
    assert new_reaper != old_reaper
    # the old reaper never wrote work's end: the supervisor learned it as the run's subreaper
    assert not any(line.startswith("E\t0\twork\t") for line in ledger.read_text().splitlines()), (
        ledger.read_text()
    )


def test_ledger_settle_waits_until_the_reaper_has_acted_on_every_request(rig: Rig) -> None:
    """A new supervisor must not judge a launch its predecessor asked for before the reaper
    has read every request: R (started) and X (request pipe closed) lines tell it when."""
    key = (0, "main", 0)
    rig.spawn(key, ["true"])
    rig.event("E", key)
    ledger = Ledger(str(rig.ledger))
    started = time.monotonic()
    ledger.settle(wait=0.2)  # the request pipe is still open: nothing says it is settled
    assert time.monotonic() - started >= 0.2
    assert set(ledger.reapers) == {rig.spawner.pid} and not ledger.settled
    rig.spawner.close()
    started = time.monotonic()
    ledger.settle(wait=120.0)
    assert time.monotonic() - started < 60  # settled by the X line, not by sitting out `wait`
    assert ledger.settled == {rig.spawner.pid}
    assert [f[0] for f in rig.lines()] == ["R", "S", "E", "X"]


def test_ledger_lines_of_an_earlier_attempt_are_not_this_runs(tmp_path: Path) -> None:
    """`run --retry-failed` numbers a job's runs from 0 again: lookups take the run's launch
    time, and a line older than that belongs to an earlier attempt."""
    path = tmp_path / "reaper.log"
    key = (1, "main", 0)
    path.write_text(
        "R\t50\t7\t99.0\n"
        "S\t1\tmain\t0\t100\t2000\t50\t100.0\n"
        "E\t1\tmain\t0\t100\t3\t101.0\n"
        "F\t1\tmain\t1\tnope\t102.0\n"
    )
    ledger = Ledger(str(path))
    ledger.refresh()
    assert ledger.reapers == {50: 7}
    assert ledger.spawn_of(key, since=100.0) == (100, 2000, 50)
    assert ledger.end_of(key, since=100.0) == 3
    assert ledger.spawn_of(key, since=200.0) is None  # a relaunch at 200: not started yet
    assert ledger.end_of(key, since=200.0) is None
    assert ledger.status(key, 200.0, wait=0.5) is None
    assert ledger.failure_of((1, "main", 1), since=102.0) == "nope"
    assert ledger.failure_of((1, "main", 1), since=103.0) is None
    with path.open("a") as f:  # the new attempt's own lines: the newest wins
        f.write("S\t1\tmain\t0\t300\t4000\t50\t201.0\nE\t1\tmain\t0\t300\t0\t202.0\n")
    ledger.refresh()
    assert ledger.spawn_of(key, since=200.0) == (300, 4000, 50)
    assert ledger.end_of(key, since=200.0) == 0


def test_a_run_that_cannot_start_does_not_take_the_reaper_down(rig: Rig) -> None:
    """Any error starting a run (here a NUL byte in an argument: ValueError, not OSError)
    is that run's F line; the same reaper goes on with the next run."""
    bad = (0, "main", 0)
    rig.spawn(bad, ["/bin/echo", "x\0y"])
    assert "null byte" in rig.event("F", bad)[4]
    good = (0, "main", 1)
    rig.spawn(good, ["true"])
    assert rig.event("E", good)[5] == 0
    assert rig.poll_exit() is None and rig.line("S", good)[6] == str(rig.spawner.pid)  # type: ignore[index]


def test_the_supervisor_names_its_reaper_in_the_ledger_before_any_request(tmp_path: Path) -> None:
    """A successor must know of a reaper even if it was killed before writing anything."""
    spawner = Spawner(str(tmp_path / "reaper.log"), dict(os.environ), False)
    try:
        ledger = Ledger(str(tmp_path / "reaper.log"))
        ledger.refresh()
        assert ledger.reapers == {spawner.pid: proc_start_ticks(spawner.pid)}
    finally:
        spawner.close()
        os.waitpid(spawner.pid, 0)
