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
keeps one **spare**: a child forked in advance that has done what does not depend on the call
(session, signals, descriptors) and waits on a pipe; a spawn request hands the call to it
(one write), and the next spare is forked after the events of a turn that started no call
(so not while a call that just started needs the CPU). A spare
that died, or none, means an ordinary fork. A module the zygote imports (warm.py) retires the
spare (forked before it). The zygote's own pipe closing (it ended) ends the spare.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import sys
import time

import cloudpickle  # noqa: F401  (imported here so that no call pays for it)

from corral.executor import runner, warm
from corral.supervisor import reaper

RUNNER = ["-m", "corral.executor.runner"]
_OUT = os.O_WRONLY | os.O_CREAT | os.O_APPEND


class CallReaper(reaper.Reaper):
    def __init__(self, ledger: str, console: tuple[int, int] | None) -> None:
        super().__init__(ledger, console)
        self.to_warm: list[str] = []  # calls forked whose module may be worth importing here
        self.tried: set[str] = set()  # modules tried (see warm.py)
        self.spare: tuple[int, int, int] | None = None  # a forked call-to-be: (pid, ticks, pipe)
        self.started = False  # a call started since the last publish

    def publish(self) -> None:
        super().publish()  # the turn's events are out first: what follows is off their path
        warmed = False
        while self.to_warm:
            warmed = warm.warm(self.to_warm.pop(), self.tried) or warmed
        if warmed and self.spare is not None:  # forked before the import: retire it
            os.close(self.spare[2])
            self.spare = None
        if self.spare is None and self.base is not None and not self.started:
            self.spare = _fork_spare()  # not while a call just started: it needs the CPU
        self.started = False

    def spawn(self, req: tuple) -> None:  # type: ignore[type-arg]
        job, process, run, argv, env, cwd, stdout, stderr = req[:8]
        user = req[8] if len(req) > 8 else None
        if len(argv) != 4 or argv[1:3] != RUNNER or stdout is None or stderr is None or user:
            super().spawn(req)
            return
        now = time.time()
        order = pickle.dumps((argv[3], env, self.base or {}, cwd, stdout, stderr), protocol=5)
        started = self._hand_to_spare(order)
        if started is None:
            started = self._fork(order)
        if started is None:
            reason = "cannot fork the call"
            self.lines.append(f"F\t{job}\t{process}\t{run}\t{reason}\t{now:.6f}\n")
            self.events.append(reaper.frame(("F", job, process, run, reason, now)))
            return
        pid, ticks = started
        self.started = True
        self.runs[pid] = (job, process, run)
        if len(self.tried) < warm.MAX_MODULES:
            self.to_warm.append(argv[3])
        self.lines.append(f"S\t{job}\t{process}\t{run}\t{pid}\t{ticks}\t{self.me}\t{now:.6f}\n")
        self.events.append(reaper.frame(("S", job, process, run, pid, ticks, now)))

    def _hand_to_spare(self, order: bytes) -> tuple[int, int] | None:
        """The spare runs this call: it has forked already (no fork on the call's path)."""
        if self.spare is None:
            return None
        pid, ticks, pipe = self.spare
        self.spare = None
        try:
            _write_all(pipe, order)
        except OSError:  # the spare died (killed by someone): fork as usual
            return None
        finally:
            os.close(pipe)
        return pid, ticks

    def _fork(self, order: bytes) -> tuple[int, int] | None:
        spare = _fork_spare()
        if spare is None:
            return None
        pid, ticks, pipe = spare
        try:
            _write_all(pipe, order)
        finally:
            os.close(pipe)
        return pid, ticks


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fork_spare() -> tuple[int, int, int] | None:
    """A forked child that waits for its call (see _spare); None if fork fails (the call then
    fails with the reason, through the reaper's F line: see spawn)."""
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
        base, env, base_env, cwd, stdout, stderr = pickle.loads(data)
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(stdout, _OUT, 0o644)
        err = os.open(stderr, _OUT, 0o644)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        for fd in {null, out, err} - {0, 1, 2}:
            os.close(fd)
        os.makedirs(cwd, exist_ok=True)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(base_env)
        os.environ.update(env)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (ours until _exit)
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    except BaseException:
        os._exit(71)
    runner.run_and_exit(base)


if __name__ == "__main__":
    gc.freeze()  # what is imported now stays shared with every forked call (no copy-on-write)
    sys.exit(reaper.main(sys.argv, make=CallReaper))
