"""The call zygote: a reaper that forks calls from a pre-imported Python instead of spawning.

Starting Python for every call costs ~10 ms here (~115 calls/s); forking a process that has
already imported cloudpickle and the runner costs well under a millisecond. The zygote speaks
the reaper's protocol (supervisor/reaper.py: spawn requests in, S/E events out) and writes the
same ledger lines, so a call's exit status outlives the supervisor exactly like a shell run's,
and recovery reads it the same way. A spawn request whose argv is the runner's command
(`PYTHON -m corral.executor.runner BASE`) is forked; any other is spawned as the reaper would.

The child: a session of its own (so it is its process group, like a spawned run), default
signal dispositions, stdin /dev/null, stdout/stderr appended to the run's log files, the run's
environment and working directory, no descriptor of the zygote's; then it runs the call and
`os._exit`s. The zygote is single-threaded, so forking it is safe.

Warm: the fork is taken off the call's path. After each turn's events are out, the zygote
keeps **spares**: children forked in advance that have done what does not depend on the call
(session, signals, descriptors) and wait on a pipe; a spawn request hands the call to one
(one write). It keeps one per running call (at least one, at most MAX_SPARES), so that the
calls of a turn in which several slots came free all find one; it forks them while it waits
for the supervisor (never while a request is waiting to be read). A spare that died, or none,
means an ordinary fork. A module the zygote imports (warm.py) retires the spares (forked
before it). The zygote's own pipe closing (it ended) ends the spares.

Slots and the queue: started with `--slots=N` (the executor's max_workers), the zygote runs
N calls at once and holds the spawn requests beyond them, oldest first (a `Q` ledger line
each: handed over, not started); the supervisor hands over up to twice N (daemon.py), each
journaled LAUNCHING before it is sent. A call that ends frees its slot and the next starts in
the same turn, its S line written with the E line before it: the slot does not wait for the
supervisor. A stopped call (SIGSTOP: it waits for calls of its own) does not hold its slot
(waitpid reports stops and continues). A withdrawal (a kill before the pid came back) drops a
held call: it ends by that signal with pid 0, never started. When the request pipe closes (the
supervisor is gone), every held call starts at once, before the X line, so that a successor
finds each of them started exactly once.

The environment: the zygote adopts the supervisor's (the reaper's first frame) as its own,
so that a call's process changes only what its run adds (CORRAL_JOB...): rebuilding the whole
environment in every call cost more than a third of a trivial call's CPU. Log files and the
job's directory get the task's privacy (0600/0700, or 0640/0750 when group-readable), as the
reaper gives a spawned run's.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import select
import signal
import sys
import time
from typing import Any

import cloudpickle  # noqa: F401  (imported here so that no call pays for it)

from corral.executor import runner, warm
from corral.supervisor import reaper

RUNNER = ["-m", "corral.executor.runner"]
MAX_SPARES = 4
SLOTS = "--slots="  # the zygote's first argument: how many calls run at once
_OUT = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW

Spare = tuple[int, int, int]  # a forked call-to-be: (pid, start ticks, its pipe)


class CallReaper(reaper.Reaper):
    def __init__(self, ledger: str, console: tuple[int, int] | None, slots: int = 0) -> None:
        super().__init__(ledger, console)
        self.slots = slots  # calls running at once (0: no limit); more wait in `queue`
        self.queue: list[tuple] = []  # type: ignore[type-arg]  # spawn requests, oldest first
        self.paused: set[int] = set()  # calls stopped (SIGSTOP): their slot is free
        self.to_warm: list[str] = []  # calls forked whose module may be worth importing here
        self.tried: set[str] = set()  # modules tried (see warm.py)
        self.spares: list[Spare] = []
        self.adopted: dict[str, str] | None = None  # the environment made ours (see _adopt)
        self.quiet = 0  # calls in a row that brought no module to try (see _note_module)

    def reap(self) -> None:
        """Ends, and stops and continues: a stopped call (it waits for others) frees its slot."""
        while self.runs:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG | os.WUNTRACED | os.WCONTINUED)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if os.WIFSTOPPED(status):
                self.paused.add(pid)
            elif os.WIFCONTINUED(status):
                self.paused.discard(pid)
            else:
                self.ended(pid, status)

    def requests_closed(self) -> None:
        """The supervisor is gone (or done): every call it handed over starts now, slots or
        not, so that the X line that follows means what it says (nothing left to start) and a
        successor finds each of them started, exactly once."""
        while self.queue:
            self._start(self.queue.pop(0))

    def withdraw(self, key: tuple, sig: int) -> None:  # type: ignore[type-arg]
        """A queued call killed before it started never starts: it ends by `sig`, pid 0."""
        for req in self.queue:
            if tuple(req[:3]) == tuple(key):
                self.queue.remove(req)
                job, process, run = key
                now = time.time()
                self.lines.append(f"E\t{job}\t{process}\t{run}\t0\t{-sig}\t{now:.6f}\n")
                self.events.append(reaper.frame(("E", job, process, run, 0, -sig, now)))
                return

    def _free(self) -> bool:
        return not self.slots or len(self.runs) - len(self.paused & self.runs.keys()) < self.slots

    def publish(self) -> None:
        while self.queue and self._free():  # a slot that came free this turn: at once
            self._start(self.queue.pop(0))
        self.paused &= self.runs.keys()
        super().publish()  # the turn's events are out first: what follows is off their path
        warmed, tried = False, len(self.tried)
        while self.to_warm:
            warmed = warm.warm(self.to_warm.pop(), self.tried) or warmed
        if len(self.tried) > tried:  # a new module: look at the next calls' too
            self.quiet = 0
        if warmed:  # forked before the import: retire them (and undo what it did to environ)
            self._retire()
            self.adopted = None
        if self.base is None:
            return
        self._adopt()
        want = min(MAX_SPARES, max(1, len(self.runs)))
        while len(self.spares) < want and not _requests_waiting():
            spare = _fork_spare()
            if spare is None:
                break
            self.spares.append(spare)

    def _adopt(self) -> None:
        """Make the supervisor's environment ours: a call's process inherits it, and changes
        only what its run adds."""
        assert self.base is not None
        if self.adopted is self.base and os.environ == self.base:
            return
        self._retire()  # they hold the environment we had
        os.environ.clear()
        os.environ.update(self.base)
        self.adopted = self.base

    def _retire(self) -> None:
        for _, _, pipe in self.spares:
            os.close(pipe)
        self.spares.clear()

    def spawn(self, req: tuple) -> None:  # type: ignore[type-arg]
        """A call starts when a slot is free, in the order handed over; it waits here (its
        run LAUNCHING in the journal) until then: see publish."""
        if self.queue or not self._free():
            self.queue.append(req)
            job, process, run = req[:3]  # Q: handed over, not started (a reader skips it)
            self.lines.append(f"Q\t{job}\t{process}\t{run}\t{time.time():.6f}\n")
        else:
            self._start(req)

    def _start(self, req: tuple) -> None:  # type: ignore[type-arg]
        job, process, run, argv, env, cwd, stdout, stderr = req[:8]
        user = req[8] if len(req) > 8 else None
        if len(argv) != 4 or argv[1:3] != RUNNER or stdout is None or stderr is None or user:
            super().spawn(req)
            return
        now = time.time()
        self._adopt()
        changes = _changes(self.base or {}, self.environment(env, None))
        dir_mode = self.dir_mode if cwd.startswith(self.task_prefix) else 0o777
        order = pickle.dumps((argv[3], changes, cwd, stdout, stderr, self.mode, dir_mode), protocol=5)
        started = self._hand_to_spare(order) or _hand(_fork_spare(), order)
        if started is None:
            reason = "cannot fork the call"
            self.lines.append(f"F\t{job}\t{process}\t{run}\t{reason}\t{now:.6f}\n")
            self.events.append(reaper.frame(("F", job, process, run, reason, now)))
            return
        pid, ticks = started
        self.runs[pid] = (job, process, run)
        self._note_module(argv[3])
        self.lines.append(f"S\t{job}\t{process}\t{run}\t{pid}\t{ticks}\t{self.me}\t{now:.6f}\n")
        self.events.append(reaper.frame(("S", job, process, run, pid, ticks, now)))

    def _note_module(self, base: str) -> None:
        """Look at the call's module (warm.py) after this turn, unless calls have come from
        modules tried already for a while: then only every 64th call (reading each payload's
        metadata again was a tenth of the zygote's time in a long map)."""
        if len(self.tried) >= warm.MAX_MODULES:
            return
        self.quiet += 1
        if self.quiet <= 32 or self.quiet % 64 == 0:
            self.to_warm.append(base)

    def _hand_to_spare(self, order: bytes) -> tuple[int, int] | None:
        """A spare runs this call: it has forked already (no fork on the call's path)."""
        while self.spares:
            started = _hand(self.spares.pop(0), order)
            if started is not None:
                return started
        return None


def _requests_waiting() -> bool:
    """Whether the supervisor has sent a request we have not read (then the spares wait)."""
    return bool(select.select([3], [], [], 0)[0])


def _changes(base: dict[str, str], full: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """What a call's process changes in the environment it inherits (`base`) to get `full`."""
    return {k: v for k, v in full.items() if base.get(k) != v}, [k for k in base if k not in full]


def _hand(spare: Spare | None, order: bytes) -> tuple[int, int] | None:
    """Give the call to a forked spare; None if there is none, or it died (killed by someone)."""
    if spare is None:
        return None
    pid, ticks, pipe = spare
    try:
        _write_all(pipe, order)
    except OSError:
        return None
    finally:
        os.close(pipe)
    return pid, ticks


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fork_spare() -> Spare | None:
    """A forked child that waits for its call (see _spare); None if fork fails (the call then
    fails with the reason, through the reaper's F line: see spawn)."""
    for stream in (sys.stdout, sys.stderr):  # nothing of ours is written by the call
        with contextlib.suppress(Exception):
            stream.flush()
    r, w = os.pipe2(os.O_CLOEXEC)
    before = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return None
    if pid == 0:
        gc.disable()  # a short-lived call: collecting would only copy shared pages
        _spare(r)
    os.close(r)
    ticks = reaper.ticks_of(before, time.clock_gettime_ns(time.CLOCK_BOOTTIME))
    return pid, reaper.start_ticks(pid) if ticks is None else ticks, w


def _spare(pipe: int) -> None:
    """In the forked child: become a call's process as far as can be done before knowing the
    call (a session of its own, default signals, none of the zygote's descriptors), then wait
    for the call (its payload, environment, directory, log files) and run it. The pipe's end
    without a call: the zygote retired us, or is gone."""
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for sig in reaper.RESET:
            signal.signal(sig, signal.SIG_DFL)
        os.closerange(3, pipe)  # the zygote's pipes and ledger are not the call's
        os.closerange(pipe + 1, 1 << 16)
        data = bytearray()
        while chunk := os.read(pipe, 1 << 16):
            data += chunk
        if not data:
            os._exit(0)
        os.close(pipe)
        base, (sets, unsets), cwd, stdout, stderr, mode, dir_mode = pickle.loads(data)
        _become(cwd, stdout, stderr, mode, dir_mode)
        for key in unsets:
            os.environ.pop(key, None)
        os.environ.update(sets)
        sys.stdout, sys.stderr = _stream(sys.stdout, 1), _stream(sys.stderr, 2)
    except BaseException:
        os._exit(71)
    runner.run_and_exit(base)


def _stream(current: Any, fd: int) -> Any:
    """The call's sys.stdout or sys.stderr on `fd`, line-buffered: the zygote's own (made
    line-buffered at its start, flushed before each fork), else a new one (creating one cost
    a tenth of a trivial call's CPU)."""
    try:
        if current.line_buffering and current.fileno() == fd:
            return current
    except (AttributeError, OSError, ValueError):
        pass
    return open(fd, "w", buffering=1, closefd=False)


def _become(cwd: str, stdout: str, stderr: str, mode: int, dir_mode: int) -> None:
    """stdin /dev/null, stdout and stderr appended to the run's logs, in the run's directory."""
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(stdout, _OUT, mode)
    err = os.open(stderr, _OUT, mode)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)
    for fd in {null, out, err} - {0, 1, 2}:
        os.close(fd)
    reaper.make_workdir(cwd, dir_mode)
    os.chdir(cwd)


if __name__ == "__main__":
    for _stdio in (sys.stdout, sys.stderr):  # the calls' own, line-buffered (see _stream)
        with contextlib.suppress(Exception):
            _stdio.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    gc.freeze()  # what is imported now stays shared with every forked call (no copy-on-write)
    _slots = int(sys.argv.pop(1)[len(SLOTS) :]) if sys.argv[1].startswith(SLOTS) else 0
    sys.exit(reaper.main(sys.argv, make=lambda ledger, console: CallReaper(ledger, console, _slots)))
