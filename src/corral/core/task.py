"""One task: the fold of its records (Thermos semantics), and what a run's end means.

`TaskRuntime.apply(record)` folds a record in, every change checked against the tables of
core/states.py; core/decisions.py's `decide_task(rt, now)` says what the task does next.
No I/O, no clock.

Corrections to Thermos, on purpose: a run killed by a signal corral did not send counts as a
failure; killing means the whole tree, TERM first, KILL after the grace period.
"""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass, field

from corral.core.records import Cause, Record, RunUpdate, Signal, SignalCause, Transition, cause_of
from corral.core.states import (
    RUN_LIVE,
    RUN_TRANSITIONS,
    TASK_TERMINAL,
    TASK_TRANSITIONS,
    RunState,
    TaskState,
)
from corral.spec.model import Process, Task

# A record's state string to its enum by dict lookup: Enum's constructor costs ~0.5 us, which
# is a tenth of a replay's time per record (bench/replay.py).
_TASK_STATES = {state.value: state for state in TaskState}
_RUN_STATES = {state.value: state for state in RunState}

SIGTERM = int(_signal.SIGTERM)
SIGKILL = int(_signal.SIGKILL)
MAX_LOST_RUNS = 5  # a process lost this many times is failed: bounded retries of the unknown
# runs of a process kept in the fold: a daemon restarted forever must not grow memory (or the
# checkpoint a compaction writes) without bound; older ended runs are counted in `dropped`
KEPT_RUNS = 100


class FoldError(Exception):
    """A record that the state machine does not allow: the journal is inconsistent."""


@dataclass(slots=True)
class Run:
    process: str
    run: int
    state: RunState
    launched_at: float
    pid: int = 0
    start_ticks: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    reason: str = ""
    signal_sent: int = 0  # the strongest signal corral sent (0 = none)
    signal_reason: SignalCause = SignalCause.NONE
    term_sent_at: float | None = None
    paused_at: float | None = None
    paused_total: float = 0.0

    @property
    def live(self) -> bool:
        return self.state in RUN_LIVE

    def active_seconds(self, now: float) -> float:
        """Wall-clock seconds this run has been running, paused time excluded."""
        if self.started_at is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else now
        paused = self.paused_total + ((end - self.paused_at) if self.paused_at is not None else 0.0)
        return max(0.0, end - self.started_at - paused)


@dataclass(slots=True)
class ProcessRuntime:
    spec: Process
    runs: list[Run] = field(default_factory=list)
    failures: int = 0
    lost: int = 0
    succeeded: bool = False  # at least one run succeeded and the process is not a daemon
    dropped: int = 0  # earlier runs no longer kept (KEPT_RUNS); their counts are in failures, lost

    @property
    def last(self) -> Run | None:
        return self.runs[-1] if self.runs else None

    @property
    def live_run(self) -> Run | None:
        last = self.last
        return last if last is not None and last.live else None

    @property
    def failed(self) -> bool:
        limit = self.spec.max_failures
        return (limit > 0 and self.failures >= limit) or self.lost >= MAX_LOST_RUNS

    @property
    def finished(self) -> bool:
        """Will never run again in this attempt."""
        return (self.succeeded or self.failed) and self.live_run is None


@dataclass(slots=True, init=False)
class TaskRuntime:
    """One task (or job) as folded from its records. A replay builds one per started job, so
    `__init__` is written out (no __post_init__, no default factories): half the cost of the
    generated one (bench/replay.py). The initial values are there, the fields' meaning here."""

    job: int
    spec: Task
    state: TaskState
    attempt: int
    processes: dict[str, ProcessRuntime]
    reason: str
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    phase_since: float  # when CLEANING / FINALIZING began
    kill_requested: bool
    kill_grace: float | None
    paused: bool  # the whole task is paused
    paused_processes: set[str]
    retry_requested: bool  # `run --retry-failed`: not folded from a transition
    failed_cause: Cause  # why ACTIVE ended badly (FAILED, DEADLOCK); NONE otherwise
    next_run: dict[str, int]  # run numbers go on across attempts

    def __init__(self, job: int, spec: Task) -> None:
        self.job = job
        self.spec = spec
        self.state = TaskState.PENDING
        self.attempt = 0
        self.processes = {p.name: ProcessRuntime(p) for p in spec.processes}
        self.reason = ""
        self.created_at = None
        self.started_at = None
        self.finished_at = None
        self.phase_since = 0.0
        self.kill_requested = False
        self.kill_grace = None
        self.paused = False
        self.paused_processes = set()
        self.retry_requested = False
        self.failed_cause = Cause.NONE
        self.next_run = {}

    def _reset_processes(self) -> None:
        self.processes = {p.name: ProcessRuntime(p) for p in self.spec.processes}

    @property
    def terminal(self) -> bool:
        return self.state in TASK_TERMINAL

    def live_runs(self) -> list[Run]:
        return [r for p in self.processes.values() if (r := p.live_run) is not None]

    def grace(self) -> float:
        return self.spec.kill_grace if self.kill_grace is None else self.kill_grace

    # -- the fold ------------------------------------------------------------------------------

    def apply(self, record: Record) -> None:
        # exact types (records are final structs): the fold's hot path (bench/replay.py)
        if type(record) is RunUpdate:
            self.apply_run(record)
        elif type(record) is Transition:
            self.apply_transition(record)
        elif isinstance(record, Signal):
            self._apply_signal(record)

    def apply_transition(self, rec: Transition) -> None:
        new = _TASK_STATES.get(rec.state) or TaskState(rec.state)  # ValueError names a bad one
        if new is not self.state and new not in TASK_TRANSITIONS[self.state]:
            raise FoldError(f"job {self.job}: task {self.state} -> {new} is not allowed")
        if self.created_at is None:
            self.created_at = rec.at
        if new is TaskState.PENDING and self.state in TASK_TERMINAL:
            # a new attempt: processes start afresh, run numbers go on
            self._reset_processes()
            self.kill_requested = False
            self.kill_grace = None
            self.retry_requested = False  # granted: a replay must not see it still asked for
            self.paused = False
            self.paused_processes = set()
            self.failed_cause = Cause.NONE
            self.reason = ""
            self.finished_at = None
        self.attempt = rec.attempt
        self.state = new
        self.phase_since = rec.at
        if new is TaskState.ACTIVE and self.started_at is None:
            self.started_at = rec.at
        if new in _LEAVING:
            cause = cause_of(rec)
            if cause in BAD_ENDS:
                self.failed_cause = cause
        if rec.reason:
            self.reason = rec.reason
        if new in TASK_TERMINAL:
            self.finished_at = rec.at

    def find_run(self, process: str, number: int) -> Run | None:
        """Run `number` of `process`, if it was launched in this attempt."""
        proc = self.processes.get(process)
        return None if proc is None else _find(proc.runs, number)

    def _run(self, rec: RunUpdate | Signal) -> tuple[ProcessRuntime, Run | None]:
        proc = self.processes.get(rec.process)
        if proc is None:
            raise FoldError(f"job {self.job}: unknown process {rec.process!r}")
        return proc, self.find_run(rec.process, rec.run)

    def apply_run(self, rec: RunUpdate) -> None:
        proc = self.processes.get(rec.process)
        if proc is None:
            raise FoldError(f"job {self.job}: unknown process {rec.process!r}")
        runs = proc.runs
        # the last run first, without a call: three of a job's five records are run updates
        run = runs[-1] if runs and runs[-1].run == rec.run else _find(runs, rec.run)
        new = _RUN_STATES.get(rec.state) or RunState(rec.state)
        if run is None:
            if new is not RunState.LAUNCHING:
                raise FoldError(f"job {self.job}: {rec.process} run {rec.run} starts as {new}")
            runs.append(Run(rec.process, rec.run, new, rec.at))  # positional: cheaper
            self.next_run[rec.process] = rec.run + 1
            if len(runs) > KEPT_RUNS and not runs[0].live:
                del runs[0]  # only the oldest, and only once it ended: one in, one out
                proc.dropped += 1
            return
        if new is not run.state and new not in RUN_TRANSITIONS[run.state]:
            raise FoldError(
                f"job {self.job}: {rec.process} run {rec.run}: {run.state} -> {new} is not allowed"
            )
        if rec.pid:
            run.pid = rec.pid
            run.start_ticks = rec.start_ticks
        if new is RunState.RUNNING:
            if run.started_at is None:
                run.started_at = rec.at
            if run.paused_at is not None:
                run.paused_total += rec.at - run.paused_at
                run.paused_at = None
        elif new is RunState.PAUSED:
            if run.started_at is None:
                run.started_at = rec.at
            if run.paused_at is None:
                run.paused_at = rec.at
        else:
            # terminal
            if run.paused_at is not None:
                run.paused_total += rec.at - run.paused_at
                run.paused_at = None
            run.finished_at = rec.at
            run.exit_code = rec.exit_code
            if new is RunState.SUCCESS and not proc.spec.daemon:
                proc.succeeded = True
            elif new is RunState.FAILED:
                proc.failures += 1
            elif new is RunState.LOST:
                proc.lost += 1
        if rec.reason:
            run.reason = rec.reason
        run.state = new

    def _apply_signal(self, rec: Signal) -> None:
        _, run = self._run(rec)
        if run is None:
            raise FoldError(f"job {self.job}: signal to unknown run {rec.process}/{rec.run}")
        if rec.sig in (SIGTERM, SIGKILL):
            if rec.sig == SIGTERM and run.term_sent_at is None:
                run.term_sent_at = rec.at
            # the strongest is KILL, whatever the numbers (SIGKILL 9 < SIGTERM 15)
            if rec.sig == SIGKILL or run.signal_sent == 0:
                run.signal_sent = rec.sig
            if not run.signal_reason:
                run.signal_reason = SignalCause(rec.reason)  # in memory it may be plain text


def _find(runs: list[Run], number: int) -> Run | None:
    for run in reversed(runs):
        if run.run == number:
            return run
    return None


BAD_ENDS = (Cause.FAILED, Cause.DEADLOCK)  # a task that left ACTIVE for these ends FAILED
_LEAVING = (TaskState.CLEANING, TaskState.FINALIZING, TaskState.FAILED)  # where the cause counts
DEADLINES = (SignalCause.TIMEOUT, SignalCause.HEARTBEAT)  # a deadline missed: the run FAILED
_KILLS = (SignalCause.KILL, SignalCause.LOSE)  # asked for: the run is KILLED


def exit_outcome(run: Run, exit_code: int | None, by_signal: int | None) -> tuple[RunState, str]:
    """What a run's end means. `by_signal` is the signal that ended it, when known.

    A run that ends after corral signalled it is KILLED (or FAILED for a timeout or a heartbeat
    miss); any other death by signal is a FAILED run, never a silent restart.
    """
    if run.signal_sent:
        # a deadline missed is a failure and a kill is a kill, even if the run exits 0 on TERM;
        # a process stopped because the task is done (cleanup) may still end cleanly
        if run.signal_reason in DEADLINES:
            return RunState.FAILED, run.signal_reason.value
        if run.signal_reason in _KILLS or exit_code != 0 or by_signal is not None:
            return RunState.KILLED, run.signal_reason.value
    if exit_code == 0 and by_signal is None:
        return RunState.SUCCESS, ""
    if by_signal is not None:
        return RunState.FAILED, f"signal {by_signal}"
    return RunState.FAILED, f"exit {exit_code}"
