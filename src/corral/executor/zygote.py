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
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import time

import cloudpickle  # noqa: F401  (imported here so that no call pays for it)

from corral.executor import runner
from corral.supervisor import reaper

RUNNER = ["-m", "corral.executor.runner"]
_OUT = os.O_WRONLY | os.O_CREAT | os.O_APPEND


class CallReaper(reaper.Reaper):
    def spawn(self, req: tuple) -> None:  # type: ignore[type-arg]
        job, process, run, argv, env, cwd, stdout, stderr = req[:8]
        user = req[8] if len(req) > 8 else None
        if len(argv) != 4 or argv[1:3] != RUNNER or stdout is None or stderr is None or user:
            super().spawn(req)
            return
        now = time.time()
        before = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        try:
            pid = os.fork()
        except OSError as exc:
            reason = f"cannot fork the call: {exc.strerror}"
            self.lines.append(f"F\t{job}\t{process}\t{run}\t{reason}\t{now:.6f}\n")
            self.events.append(reaper.frame(("F", job, process, run, reason, now)))
            return
        if pid == 0:
            gc.disable()  # a short-lived call: collecting would only copy shared pages
            _child(argv[3], env, self.base or {}, cwd, stdout, stderr)
        after = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        ticks = reaper.ticks_of(before, after)
        if ticks is None:
            ticks = reaper.start_ticks(pid)
        self.runs[pid] = (job, process, run)
        self.lines.append(f"S\t{job}\t{process}\t{run}\t{pid}\t{ticks}\t{self.me}\t{now:.6f}\n")
        self.events.append(reaper.frame(("S", job, process, run, pid, ticks, now)))


def _child(
    base: str, env: dict[str, str], base_env: dict[str, str], cwd: str, stdout: str, stderr: str
) -> None:
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for sig in reaper.RESET:
            signal.signal(sig, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(stdout, _OUT, 0o644)
        err = os.open(stderr, _OUT, 0o644)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.closerange(3, 1 << 16)  # the zygote's pipes and ledger are not the call's
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
