"""The supervisor loop: the thin imperative shell around core.

Each turn: collect what happened (exits, control requests, signals), ask core what to do,
make those records durable in ONE fdatasync (group commit), then carry out their effects
(spawn, signal, stop/continue). Records produced by effects (a run's pid) ride the next commit.
The loop never decides anything itself; it never polls: exits of our children arrive as
SIGCHLD on a wakeup fd, exits of re-attached runs as readable pidfds, and timers are the
deadlines core returns.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.core.records import (
    JobsAdded,
    Record,
    Request,
    RunUpdate,
    Signal,
    Transition,
    encode,
)
from corral.core.states import TASK_TERMINAL, RunState, TaskState
from corral.core.supervision import ENSEMBLE, Supervision
from corral.core.task import SIGKILL, Run, exit_outcome
from corral.journal import JournalWriter
from corral.spec.model import Task
from corral.supervisor import proc
from corral.supervisor.control import ControlServer, reply
from corral.supervisor.layout import Layout, log_name
from corral.supervisor.logs import Rotator
from corral.supervisor.spawn import Ledger, Spawner, command_argv

log = logging.getLogger("corral.supervisor")

RunKey = tuple[int, str, int]


@dataclass(slots=True)
class Effect:
    kind: str  # "spawn" | "signal" | "stop" | "cont" | "sweep"
    key: RunKey | None = None
    sig: int = 0
    job: int = -1


@dataclass
class Engine:
    layout: Layout
    sup: Supervision
    writer: JournalWriter
    ensemble: bool
    clock: Callable[[], float] = time.time
    on_turn: Callable[[Supervision], None] | None = None
    on_record: Callable[[Record], None] | None = None
    base_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    children: dict[int, RunKey] = field(default_factory=dict)  # runs our reaper started: pid -> key
    adopted: dict[int, tuple[RunKey, int]] = field(default_factory=dict)  # pidfd -> (key, pid)
    interrupts: int = 0
    detached: bool = False
    _effects: list[Effect] = field(default_factory=list)
    _replies: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)
    spawner: Spawner | None = None  # our reaper, started on the first spawn
    # runs asked of the reaper whose pid has not come back yet, with the signals they await
    _launching: dict[RunKey, list[int]] = field(default_factory=dict)
    _ledger: Ledger | None = None
    _selector: selectors.BaseSelector | None = None
    _hung_up: bool = False  # the terminal went away: console runs write to /dev/null from now
    _sweep_due: list[int] = field(default_factory=list)  # ended jobs whose leftovers wait a look
    _sweep_at: float | None = None
    _pending_since: float | None = None  # when the oldest uncommitted effect-free record came
    _rotator: Rotator = field(default_factory=Rotator)
    _crash: tuple[str, int] | None = field(default_factory=lambda: _crash_point())
    _snapshot_at: float = 0.0
    backend: Any = None  # a remote backend (SlurmBackend) when jobs run elsewhere
    public: dict[str, str] = field(default_factory=dict)  # CORRAL_* seen by runs, if not ours
    params_added: Callable[[list[dict[str, Any]]], Any] | None = None  # grows the param space
    check_params: Callable[[list[dict[str, Any]]], str | None] | None = None

    def crashpoint(self, name: str) -> None:
        """Fault injection for the crash tests: CORRAL_CRASH=POINT:N dies at the Nth POINT."""
        if self._crash is not None and self._crash[0] == name:
            left = self._crash[1] - 1
            self._crash = (name, left)
            if left <= 0:
                os.kill(os.getpid(), signal.SIGKILL)

    # -- records -------------------------------------------------------------------------------

    def record(self, rec: Record) -> None:
        """Fold a record in, buffer it for the next commit, and note the effect it asks for."""
        effect = self._effect_of(rec)
        if isinstance(rec, JobsAdded) and self.params_added is not None:
            self.params_added(rec.params)
        self.sup.apply(rec)
        self.writer.append(encode(rec))
        if effect is not None:
            self._effects.append(effect)
        if self.on_record is not None:
            self.on_record(rec)

    def _effect_of(self, rec: Record) -> Effect | None:
        if isinstance(rec, RunUpdate):
            key = (rec.job, rec.process, rec.run)
            if rec.state == RunState.LAUNCHING:
                return Effect("spawn", key)
            if rec.state == RunState.PAUSED and rec.reason == "pause":
                return Effect("stop", key)
            if rec.state == RunState.RUNNING and rec.reason == "resume":
                return Effect("cont", key)
        elif isinstance(rec, Signal):
            return Effect("signal", (rec.job, rec.process, rec.run), sig=rec.sig)
        elif self.backend is not None:
            if isinstance(rec, Transition) and rec.state == TaskState.SUBMITTED:
                return Effect("submit", job=rec.job)
            if isinstance(rec, Request) and (
                rec.action == "kill" or (rec.action == "halt" and self.sup.policy.halt.mode == "kill")
            ):
                return Effect("cancel", job=-1 if rec.job is None else rec.job)
        elif isinstance(rec, Transition) and rec.job != ENSEMBLE and rec.state in TASK_TERMINAL:
            # judged now: once the end is applied, a finished job's runs may be forgotten
            rt = self.sup.jobs.get(rec.job)
            signalled = rt is not None and any(r.signal_sent for p in rt.processes.values() for r in p.runs)
            return Effect("sweep", job=rec.job, sig=1 if signalled else 0)
        return None

    def _run(self, key: RunKey) -> Run | None:
        rt = self.sup.jobs.get(key[0])
        return None if rt is None else rt.find_run(key[1], key[2])

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> TaskState:
        """Supervise until the task or ensemble is terminal (or the supervisor detaches)."""
        selector = self._selector = selectors.DefaultSelector()
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        selector.register(wake_r, selectors.EVENT_READ, "wake")
        old_fd = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        old = {s: signal.getsignal(s) for s in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGINT, self._interrupt)
        signal.signal(signal.SIGTERM, self._interrupt)
        signal.signal(signal.SIGHUP, self._hangup)
        control: ControlServer | None = None
        try:
            control = ControlServer(self.layout.control)
            selector.register(control.fileno(), selectors.EVENT_READ, "control")
        except OSError as exc:
            log.warning("no control socket at %s: %s", self.layout.control, exc)
        for fd in self.adopted:
            selector.register(fd, selectors.EVENT_READ, "pidfd")
        handled_interrupts = 0
        try:
            while True:
                now = self.clock()
                self._reap(now)
                if self._hung_up and self.spawner is not None and not self.spawner.hung_up:
                    self.spawner.hangup()
                if self.interrupts > handled_interrupts:
                    handled_interrupts = self.interrupts
                    grace = None if handled_interrupts == 1 else 0.0
                    self.record(Request("kill", now, grace=grace))
                wake = self._decide(now)
                if self._effects or self._replies or self._commit_due(now):
                    self.crashpoint("commit")
                    self.writer.commit()
                    self._pending_since = None
                    self._flush_replies()
                    self._carry_out(selector)
                elif self._pending_since is not None:
                    due = now + max(0.0, self._pending_since + COMMIT_DELAY - time.monotonic())
                    wake = due if wake is None else min(wake, due)
                if self._sweep_at is not None:
                    self._sweep([], now)
                if self._sweep_at is not None:
                    wake = self._sweep_at if wake is None else min(wake, self._sweep_at)
                if self.on_turn is not None:
                    self.on_turn(self.sup)
                if self.ensemble and now - self._snapshot_at >= SNAPSHOT_INTERVAL:
                    self.snapshot(now)
                if self.detached or (
                    self.sup.terminal and not self.children and not self.adopted and not self._launching
                ):
                    self.writer.commit()
                    self._pending_since = None
                    self._sweep([])
                    if self.ensemble:
                        self.snapshot(now)
                    return self.sup.state
                rotate_at = self._rotator.due()
                if rotate_at is not None:
                    wake = rotate_at if wake is None else min(wake, rotate_at)
                poll_at = self.backend.due() if self.backend is not None else None
                if poll_at is not None:
                    wake = poll_at if wake is None else min(wake, poll_at)
                if self.sup.dirty:
                    timeout: float | None = 0.0
                else:
                    timeout = None if wake is None else max(0.0, wake - self.clock())
                for key, _ in selector.select(timeout):
                    if key.data == "wake":
                        with contextlib.suppress(BlockingIOError):
                            while os.read(wake_r, 4096):
                                pass
                    elif key.data == "control" and control is not None:
                        for conn, req in control.accept():
                            self._control(conn, req)
                    elif key.data == "reaper":
                        self._reaper_events()
                    elif key.data == "pidfd":
                        self._adopted_exit(key.fd, selector)
                self._rotator.check()
                if self.backend is not None:
                    self.backend.poll(self.clock())
        finally:
            signal.set_wakeup_fd(old_fd)
            for s, h in old.items():
                signal.signal(s, h)
            if self.spawner is not None:
                # the reaper exits once it has no runs left: at the end, wait for it (no stray
                # process after `corral run` returns); otherwise it lives on with its runs
                spawner, self.spawner = self.spawner, None
                spawner.detach()
                if not self.children and not self._launching:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(spawner.pid, 0)
            self._selector = None
            selector.close()
            os.close(wake_r)
            os.close(wake_w)
            if control is not None:
                control.close()

    def _commit_due(self, now: float) -> bool:
        """Records that ask for nothing (a run's pid, a note) need not cost an fdatasync of their
        own: they ride the next commit, or go alone after COMMIT_DELAY. A crash before then
        loses nothing the ledger does not have (a run's pid and start come from its S line)."""
        if not self.writer.pending:
            return False
        moment = time.monotonic()  # not the wall clock: a step back must not hold them forever
        if self._pending_since is None:
            self._pending_since = moment
        return moment - self._pending_since >= COMMIT_DELAY

    def snapshot(self, now: float) -> None:
        """status.json: job counts as of a journal size, so `status` of a 100,000-job
        ensemble needs no replay. A cache only: readers check it against the journal."""
        self._snapshot_at = now
        write_snapshot(self.layout, self.sup, self.writer.size, now)

    def _interrupt(self, signum: int, frame: object) -> None:
        self.interrupts += 1

    def _hangup(self, signum: int, frame: object) -> None:
        # the terminal went away: keep supervising, quietly (nothing worse than detaching)
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.close(devnull)
        self._hung_up = True  # the reaper is told in the loop: never write frames from a handler

    def _decide(self, now: float) -> float | None:
        wake: float | None = None
        for _ in range(100_000):
            decision = self.sup.decide(now)
            if decision.wake_at is not None:
                wake = decision.wake_at if wake is None else min(wake, decision.wake_at)
            if not decision.records:
                break
            for rec in decision.records:
                self.record(rec)
        return wake

    # -- effects -------------------------------------------------------------------------------

    def _carry_out(self, selector: selectors.BaseSelector) -> None:
        effects, self._effects = self._effects, []
        sweeps: list[tuple[int, bool]] = []
        submits = [e.job for e in effects if e.kind == "submit"]
        if submits:
            self.backend.submit(sorted(submits))
            self.crashpoint("commit")
            self.writer.commit()  # the Slurm ids, durable right after sbatch
            self._pending_since = None
        for effect in effects:
            if effect.kind == "cancel":
                self.backend.cancel(sorted(self.sup.live) if effect.job < 0 else [effect.job])
            elif effect.kind == "spawn":
                assert effect.key is not None
                self.crashpoint("spawn")
                self._spawn(effect.key)
            elif effect.kind == "signal":
                assert effect.key is not None
                self._signal(effect.key, effect.sig)
            elif effect.kind == "stop":
                assert effect.key is not None
                self._signal(effect.key, int(signal.SIGSTOP))
            elif effect.kind == "cont":
                assert effect.key is not None
                self._signal(effect.key, int(signal.SIGCONT))
            elif effect.kind == "sweep":
                sweeps.append((effect.job, bool(effect.sig)))
        if self.spawner is not None and self.spawner.pending:
            if not self.spawner.flush():
                self._reaper_gone()
            self.crashpoint("sent")  # the reaper has the requests, the pids are not back yet
        self._sweep(sweeps, self.clock())  # after the spawns: the next runs need not wait

    def __post_init__(self) -> None:
        # paths as strings, computed once: pathlib costs several microseconds per join, and
        # the spawn path of a 5,000-job ensemble would pay it a hundred thousand times
        self._dir = str(self.layout.dir)
        self._jobs_prefix = os.path.join(self._dir, "jobs", "")
        self._sandbox = str(self.layout.sandbox)
        self._logs_prefix = os.path.join(str(self.layout.logs), "")
        self._root = str(self.layout.root)
        self._control_path = self.layout.control

    def _log_path(self, job: int, process: str, run: int) -> str:
        """layout.log_file without the stream suffix, as a string (pathlib is slower)."""
        return self._logs_prefix + log_name(job if self.ensemble else None, process, run, "")[:-1]

    def _cwd(self, job: int, task: Task) -> str:
        """Where a run starts; the reaper creates it if needed."""
        if task.sandbox is not None:
            return os.path.abspath(task.sandbox)  # relative to where the supervisor runs
        return self._jobs_prefix + str(job) if self.ensemble else self._sandbox

    def run_env(self, job: int, process: str, run: int, task: Task, extra: dict[str, str]) -> dict[str, str]:
        """What a run's environment adds to the supervisor's (base_env, the reaper's own)."""
        env: dict[str, str] = {}
        if task.env:
            env.update(task.env)
        if extra:
            env.update(extra)
        env["CORRAL_ROOT"] = self._root
        env["CORRAL_TASK_ID"] = self.layout.id
        job_text = str(job)
        env["CORRAL_JOB"] = job_text
        env["CORRAL_PROCESS"] = process
        env["CORRAL_RUN"] = str(run)
        env["CORRAL_CONTROL"] = self._control_path
        if self.public:
            env.update(self.public)
        # the marks by which a run's escaped descendants are found, even after a crash
        env["CORRAL_MARK"] = self._dir
        env["CORRAL_MARK_JOB"] = job_text
        return env

    def _spawn(self, key: RunKey) -> None:
        """Ask the reaper for the run; its pid comes back as an event (_reaper_events)."""
        job, process, number = key
        rt = self.sup.jobs[job]
        spec = rt.processes[process].spec
        log = self._log_path(job, process, number)
        dest = spec.logger.destination
        out: str | None = log + ".stdout"
        err: str | None = log + ".stderr"
        if dest == "none":
            out = err = os.devnull
        elif dest == "console":
            out = err = None
        argv = command_argv(spec.cmd, spec.argv)
        try:
            if rt.spec.backend == "slurm-steps":
                argv = self._srun(argv, rt.spec, process)
            if self.spawner is None:
                self._start_reaper(rt.spec)
            assert self.spawner is not None
        except OSError as exc:
            self.record(
                RunUpdate(job, process, number, RunState.FAILED.value, self.clock(), reason=f"spawn: {exc}")
            )
            return
        env = self.run_env(job, process, number, rt.spec, spec.env)
        self.spawner.spawn(key, argv, env, self._cwd(job, rt.spec), out, err)
        self._launching[key] = []

    def _start_reaper(self, task: Task) -> None:
        # the runs of one task or ensemble share the template's logger settings: if any
        # process logs to the console, the reaper holds the supervisor's stdout and stderr
        console = not self._hung_up and any(p.logger.destination == "console" for p in task.processes)
        os.makedirs(self._logs_prefix, exist_ok=True)
        if self.ensemble:
            os.makedirs(self._jobs_prefix, exist_ok=True)
        self.spawner = Spawner(str(self.layout.reaper_log), self.base_env, console)
        if self._selector is not None:
            self._selector.register(self.spawner.fileno(), selectors.EVENT_READ, "reaper")

    def _srun(self, argv: list[str], task: Task, process: str) -> list[str]:
        """Inside an allocation, each run is an exclusive srun step (slurm-steps backend)."""
        import math

        from corral.backends.slurm_client import SlurmClient

        res = task.resources
        cpus = max(1, math.ceil(res.cpus)) if res.cpus else 1
        return SlurmClient().srun_step_argv(
            argv, cpus=cpus, memory_bytes=res.memory or None, name=f"{self.layout.id}.{process}"
        )

    def _needles(self, job: int, process: str | None = None, run: int | None = None) -> list[bytes]:
        needles = [proc.marker("CORRAL_MARK", str(self.layout.dir)), proc.marker("CORRAL_MARK_JOB", str(job))]
        if process is not None:
            needles.append(proc.marker("CORRAL_PROCESS", process))
        if run is not None:
            needles.append(proc.marker("CORRAL_RUN", str(run)))
        return needles

    def _signal(self, key: RunKey, sig: int) -> None:
        """Signal a run's whole tree: its process group, then descendants that escaped it."""
        waiting = self._launching.get(key)
        if waiting is not None:  # asked of the reaper, pid not back yet: signal it on arrival
            waiting.append(sig)
            return
        run = self._run(key)
        if run is None or not run.pid:
            return
        # the group, unless its pid now names another process (the run ended and the pid was
        # reused); a group whose leader is gone may still hold the run's descendants
        ticks = proc.start_ticks(run.pid)
        if ticks is None or ticks == run.start_ticks or not run.start_ticks:
            proc.signal_group(run.pid, sig)
        escaped = proc.find_marked(self._needles(*key))
        proc.signal_pids(escaped, sig)
        if sig in (signal.SIGTERM, signal.SIGINT) and run.state is RunState.PAUSED:
            # a stopped process cannot act on TERM until it is continued
            proc.signal_group(run.pid, signal.SIGCONT)
            proc.signal_pids(escaped, signal.SIGCONT)

    def _sweep(self, jobs: list[tuple[int, bool]], now: float | None = None) -> None:
        """At the end of tasks (job, whether a run of it was signalled), kill what their runs
        left behind (daemonized grandchildren).

        The /proc scan is skipped when nothing can have escaped: no orphan was re-parented to
        us (we are a subreaper), no run of the job was signalled, none was re-attached. Jobs
        none of whose runs was signalled wait up to SWEEP_INTERVAL, so that one look at our
        children serves every job that ended meanwhile; without `now`, nothing waits.
        """
        due = [(job, True) for job, signalled in jobs if signalled]
        self._sweep_due += [job for job, signalled in jobs if not signalled]
        if self._sweep_due:
            if now is None or (self._sweep_at is not None and now >= self._sweep_at):
                due += [(job, False) for job in self._sweep_due]
                self._sweep_due, self._sweep_at = [], None
            elif self._sweep_at is None:
                self._sweep_at = now + SWEEP_INTERVAL
        if not due:
            return
        ours = set(self.children)
        if self.spawner is not None:
            ours.add(self.spawner.pid)
        orphans = [p for p in proc.children_of_self() if p not in ours]
        for job, signalled in due:
            if orphans or signalled or self.adopted:
                proc.signal_pids(proc.find_marked(self._needles(job)), SIGKILL)

    # -- events --------------------------------------------------------------------------------

    def _reap(self, now: float) -> None:
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
                self._reaper_gone()
                continue
            key = self.children.pop(pid, None)
            if key is None:
                continue  # an orphan re-parented to us (subreaper): nothing to record
            self.crashpoint("reap")
            code = os.waitstatus_to_exitcode(status)
            self._ended(key, code, now)

    def _reaper_events(self) -> None:
        spawner = self.spawner
        if spawner is None:
            return
        self._handle(spawner.events())
        if spawner.eof:  # the reaper is gone; its exit (SIGCHLD) finishes the job
            self._reaper_gone()

    def _handle(self, events: list[Any]) -> None:
        """What the reaper reported, in its order: S(tarted), E(nded), F(ailed to start)."""
        for event in events:
            kind, key = event[0], (event[1], event[2], event[3])
            if kind == "S":
                self._started(key, event[4], event[5], event[6])
            elif kind == "E":
                if self.children.pop(event[4], None) is not None:
                    self.crashpoint("reap")
                    self._ended(key, event[5], event[6])
            elif kind == "F" and self._launching.pop(key, None) is not None:
                self.record(RunUpdate(*key, RunState.FAILED.value, event[5], reason=event[4]))

    def _started(self, key: RunKey, pid: int, ticks: int, at: float) -> None:
        waiting = self._launching.pop(key, [])
        self.children[pid] = key
        run = self._run(key)
        if run is None or run.state is not RunState.LAUNCHING:
            # corral gave up on it while it was being started (lost, or the task ended)
            proc.signal_group(pid, SIGKILL)
            return
        self.record(RunUpdate(*key, RunState.RUNNING.value, at, pid=pid, start_ticks=ticks))
        spec = self.sup.jobs[key[0]].processes[key[1]].spec
        if spec.logger.mode == "rotate" and spec.logger.destination in ("file", "both"):
            log = self._log_path(*key)
            files = [Path(log + ".stdout"), Path(log + ".stderr")]
            self._rotator.watch(key, files, spec.logger.rotate.size, spec.logger.rotate.backups)
        for sig in waiting:
            self._signal(key, sig)

    def _reaper_gone(self) -> None:
        """The reaper died under us (someone killed it). Its runs are now our children (we are
        a subreaper) and end through _reap; what it started or reaped but could not tell us is
        in its ledger; a run it never started is LOST. The next spawn starts a new reaper."""
        spawner, self.spawner = self.spawner, None
        if spawner is None:
            return
        self._handle(spawner.events())  # what it managed to say before dying
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(spawner.fileno())
        spawner.detach()
        ledger = Ledger(str(self.layout.reaper_log), wanted={*self._launching, *self.children.values()})
        ledger.refresh()
        now = self.clock()
        for key in list(self._launching):
            since = self._launched_at(key)
            spawned = ledger.spawn_of(key, since)
            if spawned is not None:
                self._started(key, spawned[0], spawned[1], now)
                continue
            self._launching.pop(key)
            failure = ledger.failure_of(key, since)
            state = RunState.LOST if failure is None else RunState.FAILED
            self.record(
                RunUpdate(*key, state.value, now, reason=failure or "its reaper died before starting it")
            )
        for pid, key in list(self.children.items()):
            status = ledger.end_of(key, self._launched_at(key))
            if status is not None:
                del self.children[pid]
                self._ended(key, status, now)
            elif proc.start_ticks(pid) is None:  # gone, and not even a zombie of ours
                del self.children[pid]
                self._ended(key, None, now)
        log.warning("the reaper (pid %d) died; runs it started are reaped by the supervisor", spawner.pid)

    def _ended(
        self, key: RunKey, status: int | None, now: float, *, recovered: bool = False
    ) -> RunState | None:
        """A run ended with `status` (< 0: killed by that signal; None: unknown); `recovered`:
        learned by a new supervisor, not seen. Returns the state recorded (None: not live)."""
        self._rotator.forget(key)
        run = self._run(key)
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
        return True

    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger(str(self.layout.reaper_log))
        return self._ledger

    def _launched_at(self, key: RunKey) -> float:
        """When the run was launched: ledger lines older than that are an earlier attempt's."""
        run = self._run(key)
        return float("-inf") if run is None else run.launched_at

    def _adopted_exit(self, fd: int, selector: selectors.BaseSelector) -> None:
        key, _pid = self.adopted.pop(fd)
        selector.unregister(fd)
        os.close(fd)
        # the run's reaper (a predecessor's) writes its status a moment after the pidfd fires
        self._ended(key, self.ledger().status(key, self._launched_at(key)), self.clock())

    def _control(self, conn: Any, req: dict[str, Any]) -> None:
        op = req.get("op")
        now = self.clock()
        try:
            if op == "ping":
                reply(conn, {"ok": True, "pid": os.getpid(), "state": self.sup.state.value})
            elif op in ("kill", "pause", "resume"):
                grace = req.get("grace")
                job = req.get("job")
                process = req.get("process")
                if job is None and process is not None and not self.ensemble:
                    job = 0
                if job is not None and (not isinstance(job, int) or job not in self.sup.live):
                    reply(conn, {"ok": False, "error": f"job {job} is not running"})
                    return
                if process is not None:
                    rt = self.sup.jobs[job if job is not None else 0]
                    if process not in rt.processes:
                        reply(conn, {"ok": False, "error": f"no process named {process!r}"})
                        return
                self.record(Request(op, now, job=job, process=process, grace=grace))
                self._replies.append((conn, {"ok": True}))
            elif op == "lose":
                self._replies.append((conn, {"ok": True}))
                self.lose(now)
            elif op == "heartbeat":
                job = int(req.get("job", 0))
                self.sup.beat(job, now)
                reply(conn, {"ok": True})
            elif op == "submit":
                if not self.ensemble:
                    reply(conn, {"ok": False, "error": "jobs can only be submitted to an ensemble"})
                    return
                if self.sup.terminal or self.sup.halted:
                    reply(
                        conn,
                        {"ok": False, "error": f"the ensemble is {self.sup.halted or self.sup.state.value}"},
                    )
                    return
                params = req.get("params")
                if not isinstance(params, list) or not all(isinstance(p, dict) for p in params):
                    reply(conn, {"ok": False, "error": "submit needs 'params': a list of objects"})
                    return
                if self.check_params is not None:
                    problem = self.check_params(params)
                    if problem:
                        reply(conn, {"ok": False, "error": problem})
                        return
                first = self.sup.total
                self.record(JobsAdded(first, params, now))
                self._replies.append((conn, {"ok": True, "jobs": list(range(first, first + len(params)))}))
            elif op == "status":
                counts = {s.value: n for s, n in self.sup.counts.items() if n}
                reply(conn, {"ok": True, "state": self.sup.state.value, "counts": counts})
            else:
                reply(conn, {"ok": False, "error": f"unknown op {op!r}"})
        except (TypeError, ValueError, KeyError) as exc:
            reply(conn, {"ok": False, "error": f"bad request: {exc}"})

    def _flush_replies(self) -> None:
        # answers go out only after the records they confirm are durable
        replies, self._replies = self._replies, []
        for conn, message in replies:
            reply(conn, message)

    def apply_pauses(self) -> None:
        """Without running the loop: record and carry out pause/resume decisions only."""
        from corral.core.task import pause_decisions

        now = self.clock()
        for job in sorted(self.sup.live):
            out: list[Record] = []
            pause_decisions(self.sup.jobs[job], now, out)
            for rec in out:
                self.record(rec)
        self.writer.commit()
        effects, self._effects = self._effects, []
        for effect in effects:
            if effect.key is not None and effect.kind in ("stop", "cont"):
                self._signal(effect.key, int(signal.SIGSTOP if effect.kind == "stop" else signal.SIGCONT))

    # -- losing ----------------------------------------------------------------------------------

    def lose(self, now: float) -> None:
        """Give up on everything now: kill every live tree, no finalizers, mark the rest LOST."""
        self.record(Request("lose", now))
        for job in sorted(self.sup.live):
            rt = self.sup.jobs[job]
            for run in rt.live_runs():
                key = (job, run.process, run.run)
                was_alive = run.pid > 0 and proc.alive(run.pid, run.start_ticks)
                if was_alive:
                    self.record(Signal(job, run.process, run.run, SIGKILL, now, "lose"))
                    self._signal(key, SIGKILL)
                state = RunState.KILLED if was_alive else RunState.LOST
                self.record(RunUpdate(job, run.process, run.run, state.value, now, reason="lost"))
            self.record(Transition(job, TaskState.LOST.value, now, "lost", rt.attempt))
            self._sweep([(job, True)])
        if self.ensemble and not self.sup.terminal:
            self.record(Transition(ENSEMBLE, TaskState.LOST.value, now, "lost"))
        self._effects = [e for e in self._effects if e.kind != "spawn"]
        # the runs are gone; stop waiting for them
        self.children.clear()
        for fd in list(self.adopted):
            os.close(fd)
        self.adopted.clear()


SNAPSHOT_INTERVAL = 1.0
SWEEP_INTERVAL = 0.05  # seconds an ended job may wait for the look for its leftovers
COMMIT_DELAY = 0.05  # seconds an effect-free record may wait for a commit it can share


def write_snapshot(layout: Layout, sup: Supervision, journal_size: int, now: float) -> None:
    data = {
        "id": sup.id,
        "kind": sup.kind,
        "state": sup.state.value,
        "started_at": sup.started_at,
        "finished_at": sup.finished_at,
        "total": sup.total,
        "counts": {state.value: n for state, n in sup.counts.items()},
        "halted": sup.halted,
        "supervisor_pid": os.getpid(),
        "journal_size": journal_size,
        "updated_at": now,
    }
    tmp = layout.status_snapshot.with_suffix(".tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps(data))
        os.replace(tmp, layout.status_snapshot)


def _crash_point() -> tuple[str, int] | None:
    value = os.environ.get("CORRAL_CRASH")
    if not value:
        return None
    name, _, count = value.partition(":")
    return name, int(count or 1)
