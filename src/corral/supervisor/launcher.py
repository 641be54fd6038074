"""Starting, signalling and reaping runs: the reaper's life cycle, its ledger, re-attached runs.

The launcher turns spawn and signal effects into requests to the reaper (spawn.py) and turns
what comes back (a run started, ended, failed to start; the reaper itself died) into records,
through the engine's `record`. It never decides: whether a run ended well is core's
`exit_outcome`; what to launch next is core's `decide`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral.core.records import Record, RunUpdate
from corral.core.states import RunState
from corral.core.supervision import Supervision
from corral.core.task import SIGKILL, Run, exit_outcome
from corral.spec.errors import SpecError
from corral.spec.model import Task
from corral.supervisor import proc, safefs
from corral.supervisor.backend import RunKey, Watch
from corral.supervisor.crash import CrashPoints
from corral.supervisor.environment import RunEnvironment
from corral.supervisor.logs import Rotator
from corral.supervisor.mirror import Mirror
from corral.supervisor.spawn import Ledger, Spawner, command_argv

log = logging.getLogger("corral.supervisor")

Command = Callable[[list[str], Task, str], list[str]]
_ENDING = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)  # a run not started yet need not start


class Launcher:
    def __init__(
        self,
        sup: Supervision,
        env: RunEnvironment,
        record: Callable[[Record], None],
        clock: Callable[[], float],
        crash: CrashPoints,
        base_env: dict[str, str],
        command: Command | None = None,
    ) -> None:
        self.sup = sup
        self.env = env
        self.record = record
        self.clock = clock
        self.crash = crash
        self.base_env = base_env
        self.command = command  # the argv a run starts with (slurm-steps: an srun step)
        self.children: dict[int, RunKey] = {}  # runs our reaper started: pid -> key
        self.adopted: dict[int, tuple[RunKey, int]] = {}  # pidfd -> (key, pid), after recovery
        # runs asked of the reaper whose pid has not come back yet, with the signals they await
        self.launching: dict[RunKey, list[int]] = {}
        self._held: list[tuple[RunKey, int]] = []  # kills sent after this turn's requests (flush)
        self.spawner: Spawner | None = None  # our reaper, started on the first spawn
        self.rotator = Rotator()
        self.mirror = Mirror()  # destination: both -> the console too, from the files
        self.hung_up = False  # the terminal went away: console runs write to /dev/null from now
        self._ledger: Ledger | None = None
        self._watch: Watch | None = None  # the loop's, while it runs
        self.helper: list[str] | None = None  # a reaper-compatible program (the call zygote)

    # -- queries -------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Some run we started or adopted has not been reaped yet."""
        return bool(self.children or self.adopted or self.launching)

    def our_pids(self) -> set[int]:
        """Children of ours that are runs or the reaper (not orphans re-parented to us)."""
        ours = set(self.children)
        if self.spawner is not None:
            ours.add(self.spawner.pid)
        return ours

    def run_of(self, key: RunKey) -> Run | None:
        rt = self.sup.jobs.get(key[0])
        return None if rt is None else rt.find_run(key[1], key[2])

    def launched_at(self, key: RunKey) -> float:
        """When the run was launched: ledger lines older than that are an earlier attempt's."""
        run = self.run_of(key)
        return float("-inf") if run is None else run.launched_at

    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger(str(self.env.layout.reaper_log))
        return self._ledger

    def use_ledger(self, ledger: Ledger) -> None:
        """Recovery read the ledger already: re-attached runs' ends are read from it too."""
        self._ledger = ledger

    # -- life cycle ----------------------------------------------------------------------------

    def attach(self, watch: Watch) -> None:
        self._watch = watch
        for fd in self.adopted:
            self._watch_exit(fd)
        if self.spawner is not None:
            watch(self.spawner.fileno(), self.reaper_events)

    def _watch_exit(self, fd: int) -> None:
        if self._watch is not None:
            self._watch(fd, lambda: self.adopted_exit(fd))

    def _unwatch(self, fd: int) -> None:
        if self._watch is not None:
            self._watch(fd, None)

    def detach(self) -> None:
        """The loop ends. The reaper exits once it has no runs left: at the end, wait for it
        (no stray process after `corral run` returns); otherwise it lives on with its runs."""
        self._watch = None
        if self.spawner is not None:
            spawner, self.spawner = self.spawner, None
            spawner.detach()
            if not self.children and not self.launching:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(spawner.pid, 0)

    def forget_all(self) -> None:
        """The runs are gone (lose): stop waiting for them."""
        self.children.clear()
        for fd in list(self.adopted):
            self._unwatch(fd)
            os.close(fd)
        self.adopted.clear()

    def withdraw_all(self) -> None:
        """Runs asked for and not started (the call zygote holds some) never start (lose:
        before the kills, whose freed slots must not start them)."""
        if self.spawner is not None and self.launching:
            for key in self.launching:
                self.spawner.withdraw(key, SIGKILL)
            self.flush()

    def tell_hangup(self, hung_up: bool) -> None:
        self.hung_up = self.hung_up or hung_up
        if self.hung_up:
            self.mirror.hangup()
        if self.hung_up and self.spawner is not None and not self.spawner.hung_up:
            self.spawner.hangup()

    # -- spawning and signalling ---------------------------------------------------------------

    def spawn(self, key: RunKey) -> None:
        """Ask the reaper for the run; its pid comes back as an event (reaper_events)."""
        job, process, number = key
        try:
            # rendered now: the fold keeps each job's task unrendered (Supervision.fold_task)
            task = self.sup.task_for(job)
        except SpecError as exc:  # it rendered when admitted: only a changed world gets here
            self.record(RunUpdate(job, process, number, RunState.FAILED.value, self.clock(), reason=str(exc)))
            return
        spec = next(p for p in task.processes if p.name == process)
        log_path = self.env.log_path(job, process, number)
        dest = spec.logger.destination
        out: str | None = log_path + ".stdout"
        err: str | None = log_path + ".stderr"
        if dest == "none":
            out = err = os.devnull
        elif dest == "console":
            out = err = None
        argv = command_argv(spec.cmd, spec.argv)
        try:
            if self.command is not None:
                argv = self.command(argv, task, process)
            spawner = self.spawner or self._start_reaper(task)
        except OSError as exc:
            self.record(
                RunUpdate(job, process, number, RunState.FAILED.value, self.clock(), reason=f"spawn: {exc}")
            )
            return
        env = self.env.run_env(job, process, number, task, spec.env, spec.env_clean or task.env_clean)
        spawner.spawn(key, argv, env, self.env.cwd(job, task), out, err, spec.user or task.user)
        self.launching[key] = []

    def _start_reaper(self, task: Task) -> Spawner:
        # the runs of one task or ensemble share the template's logger settings: if any
        # process logs to the console, the reaper holds the supervisor's stdout and stderr
        console = not self.hung_up and any(p.logger.destination == "console" for p in task.processes)
        # real directories of ours, never symlinks: the reaper opens the log files by path
        safefs.make_subdir(self.env.logs_prefix, self.env.dir)
        if self.env.ensemble:
            safefs.make_subdir(self.env.jobs_prefix, self.env.dir)
        spawner = self.spawner = Spawner(str(self.env.layout.reaper_log), self.base_env, console, self.helper)
        if self._watch is not None:
            self._watch(spawner.fileno(), self.reaper_events)
        return spawner

    def flush(self) -> None:
        """Send the turn's spawn requests to the reaper in one write; then the kills held
        back (see signal)."""
        if self.spawner is not None and self.spawner.pending:
            if not self.spawner.flush():
                self.reaper_gone()
            self.crash.hit("sent")  # the reaper has the requests, the pids are not back yet
        held, self._held = self._held, []
        for key, sig in held:
            self.signal(key, sig, hold=False)

    def signal(self, key: RunKey, sig: int, *, hold: bool = True) -> None:
        """Signal a run's whole tree: its process group, then descendants that escaped it.
        A kill while runs are being launched waits for this turn's requests (`hold`)."""
        waiting = self.launching.get(key)
        if waiting is not None:  # asked of the reaper, pid not back yet: signal it on arrival
            if sig in _ENDING and self.spawner is not None and not any(s in _ENDING for s in waiting):
                self.spawner.withdraw(key, sig)  # or never start it, if it still can
            waiting.append(sig)
            return
        run = self.run_of(key)
        if run is None or not run.pid:
            return
        if hold and sig in _ENDING and self.launching:
            # after this turn's requests (flush): a slot this kill frees must not start a call
            # that the same turn withdraws (the call zygote reads its requests before it reaps)
            self._held.append((key, sig))
            return
        self.signal_tree(key, run.pid, run.start_ticks, sig, paused=run.state is RunState.PAUSED)

    def signal_tree(self, key: RunKey, pid: int, ticks: int, sig: int, *, paused: bool = False) -> None:
        # the group, unless its pid now names another process (the run ended and the pid was
        # reused); a group whose leader is gone may still hold the run's descendants
        now_ticks = proc.start_ticks(pid)
        if now_ticks is None or now_ticks == ticks or not ticks:
            proc.signal_group(pid, sig)
        escaped = proc.find_marked(self.env.needles(*key))
        proc.signal_pids(escaped, sig)
        if sig in (signal.SIGTERM, signal.SIGINT) and paused:
            # a stopped process cannot act on TERM until it is continued
            proc.signal_group(pid, signal.SIGCONT)
            proc.signal_pids(escaped, signal.SIGCONT)

    # -- what happened -------------------------------------------------------------------------

    def reap(self, now: float) -> None:
        """Our own children: the reaper, orphans re-parented to us (we are a subreaper), and
        runs whose reaper died before them."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.spawner is not None and pid == self.spawner.pid:
                self.reaper_gone()
                continue
            key = self.children.pop(pid, None)
            if key is None:
                continue  # an orphan re-parented to us (subreaper): nothing to record
            self.crash.hit("reap")
            self.end_run(key, os.waitstatus_to_exitcode(status), now)

    def reaper_events(self) -> None:
        spawner = self.spawner
        if spawner is None:
            return
        self._handle(spawner.events())
        if spawner.eof:  # the reaper is gone; its exit (SIGCHLD) finishes the job
            self.reaper_gone()

    def _handle(self, events: list[Any]) -> None:
        """What the reaper reported, in its order: S(tarted), E(nded), F(ailed to start)."""
        for event in events:
            kind, key = event[0], (event[1], event[2], event[3])
            if kind == "S":
                self._started(key, event[4], event[5], event[6])
            elif kind == "E":
                pid = event[4]  # 0: withdrawn before it started (see Spawner.withdraw)
                ours = self.children.pop(pid, None) if pid else self.launching.pop(key, None)
                if ours is not None:
                    self.crash.hit("reap")
                    self.end_run(key, event[5], event[6])
            elif kind == "F" and self.launching.pop(key, None) is not None:
                self.record(RunUpdate(*key, RunState.FAILED.value, event[5], reason=event[4]))

    def _started(self, key: RunKey, pid: int, ticks: int, at: float) -> None:
        waiting = self.launching.pop(key, [])
        self.children[pid] = key
        run = self.run_of(key)
        if run is None or run.state is not RunState.LAUNCHING:
            # corral gave up on it while it was being started (lost, or the task ended)
            proc.signal_group(pid, SIGKILL)
            return
        self.record(RunUpdate(*key, RunState.RUNNING.value, at, pid=pid, start_ticks=ticks))
        spec = self.sup.jobs[key[0]].processes[key[1]].spec
        path = self.env.log_path(*key)
        if spec.logger.mode == "rotate" and spec.logger.destination in ("file", "both"):
            files = [Path(path + ".stdout"), Path(path + ".stderr")]
            self.rotator.watch(key, files, spec.logger.rotate.size, spec.logger.rotate.backups)
        if spec.logger.destination == "both" and not self.hung_up:
            label = f"{key[1]}[{key[2]}]" if not self.env.ensemble else f"{key[0]}.{key[1]}[{key[2]}]"
            self.mirror.watch(key, label, path + ".stdout", path + ".stderr")
        for sig in waiting:
            self.signal(key, sig, hold=False)

    def reaper_gone(self) -> None:
        """The reaper died under us (someone killed it). Its runs are now our children (we are
        a subreaper) and end through reap; what it started or reaped but could not tell us is
        in its ledger; a run it never started is LOST. The next spawn starts a new reaper."""
        spawner, self.spawner = self.spawner, None
        if spawner is None:
            return
        self._handle(spawner.events())  # what it managed to say before dying
        self._unwatch(spawner.fileno())
        spawner.detach()
        ledger = Ledger(str(self.env.layout.reaper_log), wanted={*self.launching, *self.children.values()})
        ledger.refresh()
        now = self.clock()
        for key in list(self.launching):
            since = self.launched_at(key)
            spawned = ledger.spawn_of(key, since)
            if spawned is not None:
                self._started(key, spawned[0], spawned[1], now)
                continue
            self.launching.pop(key)
            failure = ledger.failure_of(key, since)
            state = RunState.LOST if failure is None else RunState.FAILED
            self.record(
                RunUpdate(*key, state.value, now, reason=failure or "its reaper died before starting it")
            )
        for pid, key in list(self.children.items()):
            status = ledger.end_of(key, self.launched_at(key))
            if status is not None:
                del self.children[pid]
                self.end_run(key, status, ledger.ended_at(key, self.launched_at(key)) or now)
            elif proc.start_ticks(pid) is None:  # gone, and not even a zombie of ours
                del self.children[pid]
                self.end_run(key, None, now)
        log.warning("the reaper (pid %d) died; runs it started are reaped by the supervisor", spawner.pid)

    def end_run(
        self, key: RunKey, status: int | None, now: float, *, recovered: bool = False
    ) -> RunState | None:
        """A run ended with `status` (< 0: killed by that signal; None: unknown); `recovered`:
        learned by a new supervisor, not seen. Returns the state recorded (None: not live)."""
        self.rotator.forget(key)
        self.mirror.forget(key)
        run = self.run_of(key)
        if run is None or not run.live:
            return None
        inferred = status is None
        if status is None:
            if run.signal_sent != SIGKILL:
                reason = "gone without an exit status" if recovered else "ended without an exit status"
                self.record(RunUpdate(*key, RunState.LOST.value, now, reason=reason))
                return RunState.LOST
            status = -SIGKILL  # our own KILL: no status needed to know the end
        exit_code, by_signal = (status, None) if status >= 0 else (None, -status)
        state, reason = exit_outcome(run, exit_code, by_signal)
        if recovered and not inferred:
            reason = reason or "exit recovered"
        self.record(RunUpdate(key[0], key[1], key[2], state.value, now, exit_code=status, reason=reason))
        return state

    # -- runs started by a predecessor ---------------------------------------------------------

    def adopt(self, key: RunKey, pid: int, ticks: int) -> bool:
        """Watch a run we did not spawn (after recovery) through a pidfd: no polling."""
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return False
        if proc.start_ticks(pid) != ticks:  # the pid was reused between the check and the open
            os.close(fd)
            return False
        self.adopted[fd] = (key, pid)
        self._watch_exit(fd)
        return True

    def adopted_exit(self, fd: int) -> None:
        key, _pid = self.adopted.pop(fd)
        self._unwatch(fd)
        os.close(fd)
        # the run's reaper (a predecessor's) writes its status a moment after the pidfd fires
        ledger, since = self.ledger(), self.launched_at(key)
        status = ledger.status(key, since)
        self.end_run(key, status, ledger.ended_at(key, since) or self.clock())
