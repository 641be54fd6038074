"""A deterministic simulator of the supervisor loop around the pure core, with a fake clock.

It does what `supervisor/engine.py` does, without processes: decide until quiet, apply every
record, then carry out the effects (a LAUNCHING run starts, a Signal may end it, a PAUSED
"pause" stops its clock, a RUNNING "resume" restarts it), then move the clock to the next event
(a run's end, a scripted request, a heartbeat, or the core's own wake_at).

A script says how each run behaves: `Behaviour(exits=(1, 1, 0), duration=2.0)` fails twice and
then succeeds. The outcome of a run's end is chosen by `exit_outcome`, as the engine does.
"""

from __future__ import annotations

import heapq
import itertools
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from corral.core.records import JobsAdded, Record, Request, RunUpdate, Signal
from corral.core.states import RunState
from corral.core.supervision import Policy, Supervision
from corral.core.task import Run, exit_outcome
from corral.spec.model import Task

SIGTERM = int(signal.SIGTERM)
SIGKILL = int(signal.SIGKILL)

RunKey = tuple[int, str, int]


class SimStuck(AssertionError):
    """The simulation made no progress (a livelock in decide, or time ran past the limit)."""


@dataclass(frozen=True)
class Behaviour:
    """How the runs of one process behave, run after run (the last entry repeats)."""

    exits: tuple[int, ...] = (0,)
    duration: float | tuple[float, ...] = 1.0
    ignores_term: bool = False
    term_exit: float = 0.0  # seconds a run takes to die after a TERM it does not ignore
    lost: int = 0  # the first `lost` runs vanish without an exit status (recorded LOST)
    dies_by: int | None = None  # every run ends by this signal, which corral did not send

    def run(self, index: int) -> tuple[int, float]:
        exit_code = self.exits[min(index, len(self.exits) - 1)]
        durations = self.duration if isinstance(self.duration, tuple) else (self.duration,)
        return exit_code, durations[min(index, len(durations) - 1)]


Script = Callable[[int, str], Behaviour]  # (job, process) -> behaviour


def script(default: Behaviour = Behaviour(), **per_process: Behaviour) -> Script:
    return lambda _job, process: per_process.get(process, default)


@dataclass
class _Live:
    """A simulated OS process: its remaining work, whether it is stopped, and its fate."""

    key: RunKey
    left: float  # seconds of running still needed before it exits by itself
    exit_code: int
    since: float  # when `left` was last brought up to date
    stopped: bool = False
    doomed_at: float | None = None  # a TERM will end it then
    doomed_by: int | None = None
    token: int = 0  # bumps whenever the run's end is rescheduled (stale heap entries skip)


@dataclass
class Sim:
    sup: Supervision
    behaviour: Script
    now: float = 0.0
    requests: list[Request | JobsAdded] = field(default_factory=list)  # injected at their `at`
    beat_every: dict[int, float] = field(default_factory=dict)  # job -> heartbeat period
    check: Callable[[Supervision, Record], None] | None = None  # called after every record
    limit: float = 10_000.0  # simulated seconds before SimStuck
    recover_at: float | None = None  # then replace `sup` by a fold of the records (a recovery)
    fresh: Callable[[], Supervision] | None = None  # an empty Supervision for that fold
    records: list[Record] = field(default_factory=list)
    live: dict[RunKey, _Live] = field(default_factory=dict)
    runs_started: dict[tuple[int, str], int] = field(default_factory=dict)
    _events: list[tuple[float, int, str, object]] = field(default_factory=list)
    _seq: itertools.count = field(default_factory=itertools.count)  # type: ignore[type-arg]
    _pid: itertools.count = field(default_factory=lambda: itertools.count(1000))  # type: ignore[type-arg]
    _effects: list[Record] = field(default_factory=list)

    # -- records and effects -------------------------------------------------------------------

    def record(self, rec: Record) -> None:
        self.sup.apply(rec)
        self.records.append(rec)
        if self.check is not None:
            self.check(self.sup, rec)
        if isinstance(rec, RunUpdate | Signal):
            self._effects.append(rec)

    def _run(self, key: RunKey) -> Run | None:
        rt = self.sup.jobs.get(key[0])  # None once a finished job is forgotten
        return None if rt is None else next(r for r in rt.processes[key[1]].runs if r.run == key[2])

    def _push(self, at: float, kind: str, payload: object) -> None:
        heapq.heappush(self._events, (at, next(self._seq), kind, payload))

    def _carry_out(self) -> None:
        effects, self._effects = self._effects, []
        for rec in effects:
            key = (rec.job, rec.process, rec.run)
            if isinstance(rec, RunUpdate) and rec.state == RunState.LAUNCHING:
                self._spawn(key)
            elif isinstance(rec, RunUpdate) and rec.reason in ("pause", "resume"):
                self._stop(key, rec.reason == "pause")
            elif isinstance(rec, Signal):
                self._signal(key, rec.sig)

    def _spawn(self, key: RunKey) -> None:
        job, process, _ = key
        b = self.behaviour(job, process)
        index = self.runs_started.get((job, process), 0)
        self.runs_started[(job, process)] = index + 1
        exit_code, duration = b.run(index)
        self.live[key] = _Live(key, duration, exit_code, self.now)
        self.record(RunUpdate(*key, RunState.RUNNING.value, self.now, pid=next(self._pid), start_ticks=1))
        self._schedule_end(self.live[key])

    def _schedule_end(self, proc: _Live) -> None:
        proc.token += 1
        ends = [] if proc.stopped else [proc.since + proc.left]
        if proc.doomed_at is not None:
            ends.append(proc.doomed_at)
        if ends:
            self._push(min(ends), "end", (proc.key, proc.token))

    def _catch_up(self, proc: _Live) -> None:
        if not proc.stopped:
            proc.left -= self.now - proc.since
        proc.since = self.now

    def _stop(self, key: RunKey, stop: bool) -> None:
        proc = self.live.get(key)
        if proc is None:
            return
        self._catch_up(proc)
        proc.stopped = stop
        self._schedule_end(proc)

    def _signal(self, key: RunKey, sig: int) -> None:
        proc = self.live.get(key)
        if proc is None:
            return
        self._catch_up(proc)
        b = self.behaviour(key[0], key[1])
        if sig == SIGKILL:
            self._end(proc, None, SIGKILL)
            return
        proc.stopped = False  # the engine sends SIGCONT after a TERM to a stopped run
        if not b.ignores_term and proc.doomed_at is None:
            proc.doomed_at = self.now + b.term_exit
            proc.doomed_by = sig
        self._schedule_end(proc)

    def _end(self, proc: _Live, exit_code: int | None, by_signal: int | None) -> None:
        del self.live[proc.key]
        run = self._run(proc.key)
        if run is None or not run.live:
            return
        job, process, _ = proc.key
        b = self.behaviour(job, process)
        index = self.runs_started[(job, process)] - 1
        if by_signal is None and b.dies_by is not None:
            by_signal, exit_code = b.dies_by, None
        if by_signal is None and index < b.lost:
            self.record(
                RunUpdate(*proc.key, RunState.LOST.value, self.now, reason="ended without an exit status")
            )
            return
        state, reason = exit_outcome(run, exit_code, by_signal)
        code = exit_code if exit_code is not None else -by_signal if by_signal else None
        self.record(RunUpdate(*proc.key, state.value, self.now, exit_code=code, reason=reason))

    def recover(self) -> None:
        """A new supervisor: the same processes, state folded from the journal alone."""
        assert self.fresh is not None
        self.recover_at = None
        sup = self.fresh()
        for rec in self.records:
            sup.apply(rec)
        self.sup = sup

    # -- the loop ------------------------------------------------------------------------------

    def _decide(self) -> float | None:
        wake: float | None = None
        for _ in range(10_000):
            decision = self.sup.decide(self.now)
            if decision.wake_at is not None:
                wake = decision.wake_at if wake is None else min(wake, decision.wake_at)
            if not decision.records:
                return wake
            for rec in decision.records:
                self.record(rec)
        raise SimStuck(f"decide never settles at t={self.now}")

    def _fire(self, kind: str, payload: object) -> None:
        if kind == "end":
            key, token = payload  # type: ignore[misc]
            proc = self.live.get(key)
            if proc is None or proc.token != token:
                return
            self._catch_up(proc)
            if proc.doomed_at is not None and proc.doomed_at <= self.now:
                self._end(proc, None, proc.doomed_by)
            elif not proc.stopped and proc.left <= 1e-9:
                self._end(proc, proc.exit_code, None)
            else:
                self._schedule_end(proc)
        elif kind == "request":
            if isinstance(payload, JobsAdded):
                self.record(JobsAdded(self.sup.total, payload.params, self.now))
            else:
                assert isinstance(payload, Request)
                if payload.job is not None and payload.job not in self.sup.live:
                    return  # the engine refuses requests for jobs that are not running
                self.record(Request(payload.action, self.now, payload.job, payload.process, payload.grace))
        elif kind == "beat":
            job, period = payload  # type: ignore[misc]
            self.sup.beat(job, self.now)
            if not self.sup.terminal:
                self._push(self.now + period, "beat", payload)

    def run(self) -> list[Record]:
        """Run until the supervision ends and no process is left, or nothing more can happen."""
        for req in self.requests:
            self._push(req.at, "request", req)
        for job, period in self.beat_every.items():
            self._push(period, "beat", (job, period))
        turns_now = 0  # loop turns without the clock moving: a livelock guard
        while True:
            turns_now += 1
            if turns_now > 1000:
                raise SimStuck(f"no progress at t={self.now}")
            wake = self._decide()
            before = len(self.records)
            self._carry_out()
            if len(self.records) > before:
                continue  # effects produced records (a run started or died): decide again now
            if self.sup.terminal and not self.live:
                return self.records
            due = [t for t in (wake, self._events[0][0] if self._events else None) if t is not None]
            if not due:
                return self.records  # settled: nothing will ever happen (e.g. paused for good)
            nxt = max(self.now, min(due))
            if nxt > self.now:
                turns_now = 0
            if nxt > self.limit:
                raise SimStuck(f"still running at t={self.limit}")
            self.now = nxt
            if self.recover_at is not None and self.now >= self.recover_at:
                self.recover()
            while self._events and self._events[0][0] <= self.now:
                _, _, kind, payload = heapq.heappop(self._events)
                self._fire(kind, payload)


def task_sup(task: Task) -> Supervision:
    return Supervision("task", "t", lambda _job: task, 1, keep_finished=True)


def simulate(
    task: Task,
    behaviour: Script | None = None,
    requests: Iterable[Request] = (),
    check: Callable[[Supervision, Record], None] | None = None,
) -> Sim:
    sim = Sim(task_sup(task), behaviour or script(), requests=list(requests), check=check)
    sim.run()
    return sim


def simulate_ensemble(
    task: Task,
    total: int,
    policy: Policy,
    behaviour: Callable[[int, str], Behaviour],
    requests: Iterable[Request | JobsAdded] = (),
    check: Callable[[Supervision, Record], None] | None = None,
    keep_finished: bool = False,
    beat_every: dict[int, float] | None = None,
) -> Sim:
    sup = Supervision("ensemble", "e", lambda _job: task, total, policy, keep_finished=keep_finished)
    sim = Sim(sup, behaviour, requests=list(requests), check=check, beat_every=beat_every or {})
    sim.run()
    return sim


# -- helpers for assertions ---------------------------------------------------------------------


def run_updates(
    records: Iterable[Record], process: str | None = None, state: str | None = None
) -> list[RunUpdate]:
    return [
        r
        for r in records
        if isinstance(r, RunUpdate)
        and (process is None or r.process == process)
        and (state is None or r.state == state)
    ]


def signals(records: Iterable[Record], process: str | None = None) -> list[Signal]:
    return [r for r in records if isinstance(r, Signal) and (process is None or r.process == process)]
