"""The supervisor loop: the thin imperative shell around core.

Each turn: collect what happened (exits, control requests, signals), ask core what to do,
make those records durable in ONE fdatasync (group commit), then carry out their effects
(spawn, signal, stop/continue). Records produced by effects (a run's pid) ride the next commit.
The loop never decides anything itself; it never polls: exits of our children arrive as
SIGCHLD on a wakeup fd, exits of re-attached runs as readable pidfds, and timers are the
deadlines core returns.

The parts: loop.py (the wait: selector, signals), the backend (backend.py: where runs and
jobs go; local.py by default: the reaper, spawning, signalling, reaping, leftovers),
controller.py (control requests), snapshot.py (status.json), effects.py (what a record asks
for). Every backend is driven the same way.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from corral.core.decisions import pause_decisions
from corral.core.losing import lose_records
from corral.core.records import Action, JobsAdded, Record, Request, Transition, encode
from corral.core.states import ENSEMBLE, TaskState
from corral.core.supervision import Supervision
from corral.journal import JournalWriter
from corral.supervisor import access, proc
from corral.supervisor.backend import Backend, RunKey
from corral.supervisor.checkpoints import CheckpointWriter
from corral.supervisor.committer import Committer
from corral.supervisor.compaction import Compactor
from corral.supervisor.control import ControlServer
from corral.supervisor.controller import Controller
from corral.supervisor.crash import CrashPoints
from corral.supervisor.effects import Effect, EffectKind, effect_of
from corral.supervisor.environment import RunEnvironment
from corral.supervisor.layout import Layout
from corral.supervisor.local import LocalBackend
from corral.supervisor.loop import Loop, earliest
from corral.supervisor.snapshot import Snapshots

log = logging.getLogger("corral.supervisor")

COMMIT_DELAY = 0.05  # seconds an effect-free record may wait for a commit it can share


class Engine:
    def __init__(
        self,
        layout: Layout,
        sup: Supervision,
        writer: JournalWriter,
        ensemble: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.layout = layout
        self.sup = sup
        self.writer = writer
        self.ensemble = ensemble
        self.clock = clock
        self.on_turn: Callable[[Supervision], None] | None = None
        self.on_record: Callable[[Record], None] | None = None
        self.params_added: Callable[[list[dict[str, Any]]], Any] | None = None  # grows the space
        self.check_params: Callable[[list[dict[str, Any]]], str | None] | None = None
        self.crash = CrashPoints()
        self.committer = Committer(writer, self.crash, layout.id)
        self.env = RunEnvironment(layout, ensemble)
        # where runs and jobs go: this host unless the session gives another (session.py)
        self.backend: Backend = LocalBackend(
            sup, layout, self.env, self.record, clock, self.crash, dict(os.environ)
        )
        self.snapshots = Snapshots(layout, ensemble)
        self.checkpoints = CheckpointWriter(layout)
        self.compactor = Compactor(layout, writer, self.crash.hit)
        self.controller = Controller(self)
        self._effects: list[Effect] = []
        self._replies: list[tuple[Any, dict[str, Any]]] = []
        self._after: list[Callable[[], None]] = []  # to do once what is recorded is durable
        self._pending_since: float | None = None  # when the oldest uncommitted effect-free record came
        self._interrupts = 0
        # extensions (the executor, corral/executor/book.py): more control requests, more
        # descriptors to watch (`watch`)
        self.ops: dict[type, Callable[[Any, Any], None]] = {}
        self._watched: dict[int, Callable[[], None]] = {}
        self._loop: Loop | None = None

    @property
    def public(self) -> dict[str, str]:
        """CORRAL_* that runs see instead of ours (a Slurm node: the ensemble's socket)."""
        return self.env.public

    @public.setter
    def public(self, value: dict[str, str]) -> None:
        self.env.public = value

    def crashpoint(self, name: str) -> None:
        """Fault injection for the crash tests: CORRAL_CRASH=POINT:N dies at the Nth POINT."""
        self.crash.hit(name)

    # -- records -------------------------------------------------------------------------------

    def record(self, rec: Record) -> None:
        """Buffer a record for the next commit, fold it in, and note the effect it asks for.

        Write-ahead in the shell too: the record is encoded, size-checked and taken by the
        writer BEFORE anything folds it or acts on it; a record the fold refuses is taken back,
        so the journal never holds what its reader would refuse."""
        self.writer.append(encode(rec))
        effect = effect_of(rec, self.sup)
        try:
            self.sup.apply(rec)
        except BaseException:
            self.writer.retract()
            raise
        if isinstance(rec, JobsAdded) and self.params_added is not None:
            self.params_added(rec.params)
        if effect is not None:
            self._effects.append(effect)
        if self.on_record is not None:
            self.on_record(rec)

    def watch(self, fd: int, callback: Callable[[], None] | None) -> None:
        """Call `callback` in the loop when `fd` is readable (None: stop watching it)."""
        if callback is None:
            if self._watched.pop(fd, None) is not None and self._loop is not None:
                self._loop.unregister(fd)
        elif self._loop is not None:
            self._watched[fd] = callback
            self._loop.register(fd, "watched")

    def answer_after_commit(self, conn: Any, message: dict[str, Any]) -> None:
        """Answers go out only after the records they confirm are durable."""
        self._replies.append((conn, message))

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the records buffered so far are durable (this turn commits).
        A backend sends what its records announce only then (a job handed to a worker)."""
        self._after.append(callback)

    def _commit(self, *, crash_point: bool = True) -> bool:
        """Commit; False while the journal cannot be written (the committer retries)."""
        if not self.committer.commit(crash_point=crash_point):
            return False
        self._pending_since = None
        while self._after:
            after, self._after = self._after, []
            for callback in after:
                callback()
        return True

    def _commit_due(self) -> bool:
        """Records that ask for nothing (a run's pid, a note) need not cost an fdatasync of their
        own: they ride the next commit, or go alone after COMMIT_DELAY. A crash before then
        loses nothing the ledger does not have (a run's pid and start come from its S line)."""
        if not self.writer.pending:
            return False
        moment = time.monotonic()  # not the wall clock: a step back must not hold them forever
        if self._pending_since is None:
            self._pending_since = moment
        return moment - self._pending_since >= COMMIT_DELAY

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> TaskState:
        """Supervise until the task or ensemble is terminal."""
        with Loop() as loop:
            control = self._listen(loop)
            self.controller.server = control
            self._loop = loop
            self.backend.start(self.watch)
            try:
                while True:
                    wake = self._turn(loop)
                    if wake is _DONE:
                        return self.sup.state
                    assert not isinstance(wake, _Done)
                    self._wait(loop, control, wake)
            finally:
                self.backend.stop()
                self._loop = None
                self._replies.clear()  # never confirm what did not become durable
                self._after.clear()
                self.controller.server = None
                if control is not None:
                    control.close()

    def _listen(self, loop: Loop) -> ControlServer | None:
        """The unix socket, and TCP if asked (then runs get its address and the token)."""
        tcp = access.listen_address(self.sup.opened)
        try:
            control = ControlServer(self.layout.control, loop.register, loop.unregister, tcp=tcp)
        except OSError as exc:
            if tcp is None:
                log.warning("no control socket at %s: %s", self.layout.control, exc)
                return None
            log.warning("cannot listen on %s:%d (%s): the unix socket only", *tcp, exc)
            try:
                control = ControlServer(self.layout.control, loop.register, loop.unregister)
            except OSError as again:
                log.warning("no control socket at %s: %s", self.layout.control, again)
                return None
        if control.address is not None:
            token = self.controller.token = access.task_token(self.layout)
            url = access.advertised(control.address)
            access.publish(self.layout, url)
            self.env.control, self.env.token = url, token
            log.info("control: listening on %s", url)
        return control

    def _turn(self, loop: Loop) -> float | _Done | None:
        """One turn: what happened becomes records, records become durable, then effects.
        Returns when to wake up next (None: only on an event), or _DONE."""
        now = self.clock()
        backend = self.backend
        backend.poll(now)
        if loop.hung_up:
            backend.hangup()
        if loop.interrupts > self._interrupts:
            self._interrupts = loop.interrupts
            self.record(Request(Action.KILL, now, grace=None if self._interrupts == 1 else 0.0))
        wake = self._decide(now)
        if backend.submits_in_commit:
            self._submit_before_commit()
        if self._effects or self._replies or self._after or self._commit_due():
            if self._commit():  # effects only once their records are durable
                self._flush_replies()
                self._carry_out()
            wake = earliest(wake, _after(now, self.committer.retry_in()))
        elif self._pending_since is not None:
            wake = earliest(wake, now + max(0.0, self._pending_since + COMMIT_DELAY - time.monotonic()))
        if self.on_turn is not None:
            self.on_turn(self.sup)
        self.snapshots.maybe(self.sup, self.writer.size, now)
        w = self.writer
        self.checkpoints.maybe(self.sup, w.size, w.pending, now, frames=w.frames)
        self._compact(now)
        if self.sup.terminal and not backend.busy:
            if not self._commit(crash_point=False):
                return earliest(wake, _after(now, self.committer.retry_in()))
            backend.finish()
            backend.close()  # the supervision is over: release what the backend holds
            self.snapshots.maybe(self.sup, self.writer.size, now, force=True)
            self.checkpoints.maybe(
                self.sup, self.writer.size, self.writer.pending, now, frames=self.writer.frames, force=True
            )
            return _DONE
        return earliest(wake, backend.due())

    def _compact(self, now: float) -> None:
        """Replace the journal by its fold once it passed its threshold (compaction.py)."""
        try:
            done = self.compactor.maybe(self.sup, now)
        except OSError as exc:  # the journal is whole either way: try again once it grew more
            self.compactor.postpone()
            log.warning("cannot compact the journal: %s", exc)
            return
        if done:
            self.checkpoints.restart()

    def _wait(self, loop: Loop, control: ControlServer | None, wake: float | None) -> None:
        if self.sup.dirty:
            timeout: float | None = 0.0
        else:
            timeout = None if wake is None else max(0.0, wake - self.clock())
        client_due = control.next_deadline() if control is not None else None
        if client_due is not None:
            timeout = client_due if timeout is None else min(timeout, client_due)
        for tag, fd in loop.wait(timeout):
            if tag in ("control", "client") and control is not None:
                for client, data in control.ready(fd):
                    self.controller.handle(client, data)
            elif tag == "watched" and fd in self._watched:
                self._watched[fd]()
        if control is not None:
            control.expire()

    def _decide(self, now: float) -> float | None:
        wake: float | None = None
        for _ in range(100_000):
            decision = self.sup.decide(now)
            wake = earliest(wake, decision.wake_at)
            if not decision.records:
                break
            for rec in decision.records:
                self.record(rec)
        return wake

    def _submit_before_commit(self) -> None:
        """A backend whose submit only records (it acts once those records are durable) gets
        the turn's admitted jobs before the commit: admission and hand-over share one
        fdatasync. Not in a turn that also cancels (the cancels must go first: a job failed and
        retried in the same turn cancels its old attempt, not the new one)."""
        effects = self._effects
        if not any(e.kind is EffectKind.SUBMIT for e in effects):
            return
        if any(e.kind is EffectKind.CANCEL for e in effects):
            return
        self._effects = [e for e in effects if e.kind is not EffectKind.SUBMIT]
        self.backend.submit(sorted(e.job for e in effects if e.kind is EffectKind.SUBMIT))

    def _flush_replies(self) -> None:
        replies, self._replies = self._replies, []
        server = self.controller.server
        for client, message in replies:
            if server is not None:
                server.answer(client, message)

    # -- effects -------------------------------------------------------------------------------

    def _carry_out(self) -> None:
        effects, self._effects = self._effects, []
        backend = self.backend
        submits = [e.job for e in effects if e.kind is EffectKind.SUBMIT]
        cancels = [e.job for e in effects if e.kind is EffectKind.CANCEL]
        if cancels:  # CANCEL effects exist only for remote jobs
            # before the submits: a job failed by the watchdog and retried in the same turn
            # must cancel its old batch job, not the new one
            wanted = {job for job in cancels if job >= 0} | (self.sup.live if -1 in cancels else set())
            backend.cancel(sorted(wanted))
        if submits:  # SUBMIT effects exist only for remote jobs
            backend.submit(sorted(submits))
            self._commit()  # the batch system's ids, durable right after the submission
        for effect in effects:
            kind = effect.kind
            if kind is EffectKind.SPAWN:
                assert effect.key is not None
                backend.launch(effect.key)
            elif kind is EffectKind.SWEEP:
                backend.ended(effect.job, effect.signalled)
            elif kind is EffectKind.SIGNAL and effect.key is not None:
                backend.signal(effect.key, effect.sig)
            elif effect.key is not None and kind in _SIGNALS:
                backend.signal(effect.key, _SIGNALS[kind])
        backend.flush()

    def apply_pauses(self) -> None:
        """Without running the loop: record and carry out pause/resume decisions only."""
        now = self.clock()
        for job in sorted(self.sup.live):
            out: list[Record] = []
            pause_decisions(self.sup.jobs[job], now, out)
            for rec in out:
                self.record(rec)
        self.writer.commit()
        effects, self._effects = self._effects, []
        for effect in effects:
            if effect.key is not None and effect.kind in (EffectKind.STOP, EffectKind.CONT):
                self.backend.signal(effect.key, _SIGNALS[effect.kind])

    def lose(self, now: float) -> None:
        """Give up on everything now: kill every live tree, no finalizers, mark the rest LOST.
        Core decides (core/losing.py) from which runs are still alive; the records are durable
        before the first SIGKILL is sent."""
        targets: dict[RunKey, tuple[int, int]] = {}
        for job in sorted(self.sup.live):
            for run in self.sup.jobs[job].live_runs():
                if run.pid > 0 and proc.alive(run.pid, run.start_ticks):
                    targets[(job, run.process, run.run)] = (run.pid, run.start_ticks)
        records = lose_records(self.sup, targets.keys(), now)
        for rec in records:
            self.record(rec)
        self.writer.commit()
        self._pending_since = None
        # spawns are dropped (the runs are lost); the kills are sent below, with the pids seen
        queued, self._effects = self._effects, []
        self._effects = [
            e for e in queued if e.kind not in (EffectKind.SPAWN, EffectKind.SIGNAL, EffectKind.SWEEP)
        ]
        lost = [r.job for r in records if isinstance(r, Transition) and r.job != ENSEMBLE]
        self.backend.lose(targets, lost)


class _Done:
    """The supervision is over (a sentinel: `_turn` returns it instead of a wake time)."""


_DONE = _Done()


def _after(now: float, seconds: float | None) -> float | None:
    return None if seconds is None else now + seconds


_SIGNALS = {EffectKind.STOP: int(signal.SIGSTOP), EffectKind.CONT: int(signal.SIGCONT)}
