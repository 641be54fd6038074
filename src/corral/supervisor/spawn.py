"""Starting runs through the reaper, and reading the ledger it keeps.

The supervisor never forks a run itself: it sends a spawn request to its reaper (see
reaper.py for why and how) and learns the run's pid, and later its exit status, as events on
a pipe. A whole loop turn's requests go out in one write, after the turn's records are
durable. `Ledger` reads the reaper's ledger: how a new supervisor learns the fate of runs
that ended, or were started, while no supervisor was watching.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from corral.supervisor import ledger as ledgers
from corral.supervisor import proc, safefs
from corral.supervisor import reaper as _reaper

SHELL = "/bin/sh"
REAPER = str(Path(_reaper.__file__))

RunKey = tuple[int, str, int]


def command_argv(cmd: str | None, argv: Sequence[str] | None) -> list[str]:
    if argv is not None:
        return list(argv)
    assert cmd is not None
    return [SHELL, "-c", cmd]


class Spawner:
    """The supervisor's end of one reaper process."""

    def __init__(
        self, ledger: str, env: Mapping[str, str], console: bool, helper: Sequence[str] | None = None
    ) -> None:
        """`helper`: the program to start instead of the reaper (the executor's call zygote,
        which speaks the same protocol); it gets the ledger and the console flag appended."""
        req_r, self._req_w = os.pipe2(os.O_CLOEXEC)
        self._ev_r, ev_w = os.pipe2(os.O_CLOEXEC)
        # above 10 first, so that moving them to 3 and 4 in the child cannot clobber each other
        high_r = fcntl.fcntl(req_r, fcntl.F_DUPFD_CLOEXEC, 10)
        high_w = fcntl.fcntl(ev_w, fcntl.F_DUPFD_CLOEXEC, 10)
        actions: list[Any] = [(os.POSIX_SPAWN_DUP2, high_r, 3), (os.POSIX_SPAWN_DUP2, high_w, 4)]
        if console:
            actions += [(os.POSIX_SPAWN_DUP2, 1, 5), (os.POSIX_SPAWN_DUP2, 2, 6)]
        for fd, flags in ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY)):
            actions.append((os.POSIX_SPAWN_OPEN, fd, os.devnull, flags, 0))
        prefix = list(helper) if helper else [sys.executable, "-S", "-I", REAPER]
        argv = [*prefix, ledger, "console" if console else "-"]
        try:
            self.pid = os.posix_spawn(sys.executable, argv, env, file_actions=actions, setsid=True)
        except BaseException:
            os.close(self._req_w)
            os.close(self._ev_r)
            raise
        finally:
            for fd in (req_r, ev_w, high_r, high_w):
                os.close(fd)
        # announce it before it is sent anything: a successor waits for the X line of every
        # live reaper named here before it judges launches whose pid it never learned
        line = f"R\t{self.pid}\t{proc.start_ticks(self.pid) or 0}\t{time.time():.6f}\n"
        mode = safefs.file_mode(os.path.dirname(ledger))
        opener = lambda path: safefs.open_new(path, os.O_WRONLY | os.O_APPEND, mode)  # noqa: E731
        ledgers.append(ledger, line.encode(), opener)  # under its lock: see ledger.py
        os.set_blocking(self._ev_r, False)
        self._out = bytearray(_reaper.frame(dict(env)))  # first: the runs' base environment
        self._in = bytearray()
        self.hung_up = False
        self.closed = False  # our request pipe is closed
        self.eof = False  # the reaper's event pipe reached its end (the reaper is gone)

    def fileno(self) -> int:
        return self._ev_r

    def spawn(
        self,
        key: RunKey,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        stdout: str | None,
        stderr: str | None,
        user: str | None = None,
    ) -> None:
        """Queue a spawn request; `flush()` sends the turn's requests in one write. `user`:
        the run runs as that user (the reaper must be root)."""
        job, process, run = key
        self._out += _reaper.frame((job, process, run, list(argv), dict(env), cwd, stdout, stderr, user))

    def withdraw(self, key: RunKey, sig: int) -> None:
        """A run asked for and killed before its pid came back: a reaper that holds it, not
        started (the call zygote's queue), drops it and reports it ended by `sig`, pid 0;
        one that started it already ignores this (the signal goes to the pid on arrival)."""
        self._out += _reaper.frame(("withdraw", *key, sig))

    def hangup(self) -> None:
        """The terminal went away: console runs started from now on write to /dev/null."""
        self.hung_up = True
        self._out += _reaper.frame(("hangup",))

    @property
    def pending(self) -> bool:
        return bool(self._out)

    def flush(self) -> bool:
        """Send the queued requests (blocking: the reaper never stops reading). False if the
        reaper is gone (its requests are then dropped; the caller handles the runs)."""
        data, self._out = bytes(self._out), bytearray()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._req_w, view) :]
        except BrokenPipeError:
            return False
        return True

    def events(self) -> list[Any]:
        """The events that arrived: ("S", job, process, run, pid, ticks, at), ("F", job,
        process, run, reason, at) and ("E", job, process, run, pid, status, at) (pid 0: withdrawn
        before it started)."""
        try:
            while True:
                data = os.read(self._ev_r, 1 << 20)
                if not data:
                    self.eof = True
                    break
                self._in += data
        except BlockingIOError:
            pass
        return _reaper.unframe(self._in)

    def close(self) -> None:
        """No more requests: the reaper exits once its runs have ended."""
        if not self.closed:
            self.closed = True
            os.close(self._req_w)

    def detach(self) -> None:
        """Stop listening too (the reaper keeps writing its ledger)."""
        self.close()
        with contextlib.suppress(OSError):
            os.close(self._ev_r)


class Ledger:
    """What the reapers of one task recorded, read incrementally from ROOT/ID/reaper.log.

    A key (job, process, run) can appear more than once: `run --retry-failed` starts a job's
    run numbers again at 0. The newest line wins, and lookups take `since` (the run's LAUNCHING
    time): a line written before the run was launched belongs to an earlier attempt.
    """

    def __init__(self, path: str, wanted: set[RunKey] | None = None) -> None:
        self.path = path
        self.wanted = wanted  # only keep these runs (recovery of a big ensemble)
        self.offset = 0
        self.inode = 0  # the file read so far (a rewrite replaces it: ledger.py)
        self.spawned: dict[RunKey, tuple[int, int, int]] = {}  # key -> (pid, ticks, reaper pid)
        self.failed: dict[RunKey, str] = {}
        self.ended: dict[RunKey, int] = {}  # key -> status (< 0: the signal)
        self.at: dict[tuple[str, RunKey], float] = {}  # (S|E|F, key) -> when the line was written
        self.reapers: dict[int, int] = {}  # pid -> start ticks of the reapers that wrote here
        self.settled: set[int] = set()  # ... pids of those whose requests were all acted on

    def refresh(self) -> None:
        try:
            # non-blocking: a FIFO planted as the ledger reads as nothing instead of hanging
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return
            inode = info.st_ino
            if inode != self.inode:  # rewritten (or new): it holds every line still needed
                if self.inode:
                    self._forget()
                self.inode = inode
            os.lseek(fd, self.offset, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(fd)
        data = b"".join(chunks)
        end = data.rfind(b"\n") + 1  # a line being written now is read next time
        self.offset += end
        wanted = self.wanted
        for line in data[:end].decode(errors="replace").splitlines():
            fields = line.split("\t")
            try:
                kind = fields[0]
                if kind == "R":
                    self.reapers[int(fields[1])] = int(fields[2])
                    continue
                if kind == "X":
                    self.settled.add(int(fields[1]))
                    continue
                key = (int(fields[1]), fields[2], int(fields[3]))
                if wanted is not None and key not in wanted:
                    continue
                if kind == "S":
                    self.spawned[key] = (int(fields[4]), int(fields[5]), int(fields[6]))
                    self.at["S", key] = float(fields[7])
                elif kind == "E":
                    self.ended[key] = int(fields[5])
                    self.at["E", key] = float(fields[6])
                elif kind == "F":
                    self.failed[key] = fields[4]
                    self.at["F", key] = float(fields[5])
            except (IndexError, ValueError):
                continue  # not a line a reaper wrote: ignore it, like a torn one

    def _forget(self) -> None:
        """Read the new file from its start: what the rewrite dropped is of runs that ended."""
        self.offset = 0
        for known in (self.spawned, self.failed, self.ended, self.at, self.reapers):
            known.clear()
        self.settled.clear()

    def _fresh(self, kind: str, key: RunKey, since: float) -> bool:
        return self.at.get((kind, key), float("-inf")) >= since

    def spawn_of(self, key: RunKey, since: float) -> tuple[int, int, int] | None:
        """(pid, start ticks, reaper pid) of the run launched at `since`, if it started."""
        return self.spawned[key] if key in self.spawned and self._fresh("S", key, since) else None

    def end_of(self, key: RunKey, since: float) -> int | None:
        return self.ended[key] if key in self.ended and self._fresh("E", key, since) else None

    def ended_at(self, key: RunKey, since: float) -> float | None:
        """When the reaper saw the run end (its E line), if it did."""
        return self.at.get(("E", key)) if self.end_of(key, since) is not None else None

    def failure_of(self, key: RunKey, since: float) -> str | None:
        return self.failed[key] if key in self.failed and self._fresh("F", key, since) else None

    def settle(self, wait: float = 10.0) -> None:
        """Wait until every reaper that is still alive has acted on all the requests it was
        sent (its X line): a supervisor killed right after sending spawn requests leaves its
        reaper a moment to start those runs, and a new supervisor must see them in the ledger.
        Gives up after `wait` seconds without progress (a stopped reaper, say)."""
        deadline = time.monotonic() + wait
        while True:
            before = self.offset
            self.refresh()
            if self.offset != before:
                deadline = time.monotonic() + wait
            busy = [
                pid
                for pid, ticks in self.reapers.items()
                if pid not in self.settled and proc.alive(pid, ticks)
            ]
            if not busy or time.monotonic() > deadline:
                return
            time.sleep(0.005)

    def status(self, key: RunKey, since: float, wait: float = 2.0) -> int | None:
        """The exit status of the run launched at `since`; if its reaper still lives, wait
        (briefly) for it to write it: a pidfd says a run ended a moment before its reaper
        has reaped it."""
        deadline = time.monotonic() + wait
        while True:
            self.refresh()
            code = self.end_of(key, since)
            if code is not None:
                return code
            spawned = self.spawn_of(key, since)
            if spawned is None or not proc.exists(spawned[2]) or time.monotonic() > deadline:
                return None
            time.sleep(0.002)
