"""The fold of a whole journal: one task, or an ensemble of many jobs (what to do next is
core/admission.py's, what a Request does core/requests.py's).

A plain task is an ensemble of one job (job 0) with no retries, so one engine serves both.
Built for 100,000-job ensembles: jobs never started cost nothing (a cursor), finished jobs
cost a few bytes (compact arrays), and `decide()` only looks at jobs that changed or are due.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from corral.core.admission import decide
from corral.core.decisions import Decision
from corral.core.records import (
    Attached,
    Cause,
    Compacted,
    JobsAdded,
    JournalKind,
    Note,
    Opened,
    Record,
    Request,
    RunUpdate,
    Signal,
    Submitted,
    Transition,
    cause_of,
)
from corral.core.requests import apply_request
from corral.core.states import (
    ENSEMBLE,
    ENSEMBLE_TRANSITIONS,
    TASK_LIVE,
    TASK_TERMINAL,
    Halted,
    RunState,
    TaskState,
)
from corral.core.task import FoldError, TaskRuntime
from corral.spec.model import Halt, Task

_CODES = list(TaskState)
_CODE = {state: i for i, state in enumerate(_CODES)}
_NO_EXIT = -(2**31)
_HOLDING = TASK_LIVE | {TaskState.SUBMITTED}  # a job in these states holds a slot
# run states counted in run_totals (a record's state text looks its enum up: a StrEnum)
_TOTALS: dict[str, int] = {RunState.LAUNCHING: 0, RunState.FAILED: 1, RunState.LOST: 2}
# the job table's encoding, for readers that build many rows at once (observe/views.py):
# `states[job]` is an index into STATE_OF_CODE, `exit_codes[job]` is NO_EXIT before any exit
STATE_OF_CODE: tuple[TaskState, ...] = tuple(_CODES)
NO_EXIT = _NO_EXIT


@dataclass(frozen=True, slots=True)
class Policy:
    """How an ensemble schedules its jobs. A plain task uses the defaults."""

    job_limit: int = 1
    retries: int = 0
    retry_backoff: float = 1.0
    halt: Halt = Halt()  # noqa: RUF009 (a frozen struct: one shared default is safe)
    heartbeat: float | None = None
    cpus: float = 0.0  # host capacity for admission by declared resources (0 = unchecked)
    memory: int = 0


@dataclass(slots=True)
class JobSummary:
    job: int
    state: TaskState
    attempt: int
    exit_code: int | None


@dataclass(slots=True)
class Supervision:
    """State folded from one journal. `apply` every record in order; `decide` what comes next."""

    kind: JournalKind
    id: str
    task_for: Callable[[int], Task]  # a job's task, rendered: what its runs are started with
    total: int
    policy: Policy = Policy()
    keep_finished: bool = False  # keep per-process detail of finished jobs (readers of small runs)
    remote: bool = False  # jobs run elsewhere (Slurm): admission submits, the backend reports
    state: TaskState = TaskState.PENDING
    reason: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    opened: Opened | None = None
    supervisors: list[Attached] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    jobs: dict[int, TaskRuntime] = field(default_factory=dict)  # started and not forgotten
    next_new: int = 0  # jobs below this index have been started at least once
    states: array = field(default_factory=lambda: array("b"))  # type: ignore[type-arg]
    attempts: array = field(default_factory=lambda: array("H"))  # type: ignore[type-arg]
    exit_codes: array = field(default_factory=lambda: array("i"))  # type: ignore[type-arg]
    counts: dict[TaskState, int] = field(default_factory=dict)
    live: set[int] = field(default_factory=set)  # jobs holding a slot
    retry_at: list[tuple[float, int]] = field(default_factory=list)  # heap of PENDING retries
    # job -> when its retry is due; a heap entry that disagrees is stale (lazy deletion): the
    # fold cannot pop the heap, so a replay keeps entries of retries that have started since
    retry_due: dict[int, float] = field(default_factory=dict)
    added: list[JobsAdded] = field(default_factory=list)
    submitted: dict[int, str] = field(default_factory=dict)  # job -> scheduler id
    requeues: dict[int, int] = field(default_factory=dict)  # job -> requeues used (own budget)
    # scheduler ids of jobs the core ended while the batch system still held them (the heartbeat
    # watchdog): a recovered backend cancels them again, in case the first scancel never ran
    abandoned: set[str] = field(default_factory=set)
    halted: Halted = Halted.NONE  # why no more jobs are launched
    kill_requested: bool = False
    kill_grace: float | None = None
    lose_requested: bool = False
    paused: bool = False
    failed_jobs: set[int] = field(default_factory=set)  # ended badly with no retry left
    dirty: set[int] = field(default_factory=set)
    wakeups: list[tuple[float, int]] = field(default_factory=list)
    beats: dict[int, float] = field(default_factory=dict)  # job -> last heartbeat (not journaled)
    run_numbers: dict[int, dict[str, int]] = field(default_factory=dict)  # forgotten failed jobs
    # a job's parameters (an ensemble's param space; readers show them): no I/O, a lookup
    params_of: Callable[[int], dict[str, Any]] = lambda _job: {}
    # the same for jobs [start, stop) at once, when the param space can build them in bulk
    params_rows: Callable[[int, int], Iterable[dict[str, Any]]] | None = None
    # the task a job's fold keeps: its shape (processes, timeouts, resources, ...) without the
    # rendered text (cmd, argv, env values, sandbox), which only starting a run needs (ask
    # task_for then); None: task_for. Rendering each job was half of a replay (bench/replay.py)
    fold_task: Callable[[int], Task] | None = None
    # the executor's ensemble stays open while drivers may add calls (set by its supervisor,
    # not journaled: a plain `corral recover` lets it end once idle)
    hold: bool = False
    yielded: set[int] = field(default_factory=set)  # paused jobs that gave their slot back
    # records a compaction folded into the checkpoint at the journal's head, the last at
    # `compacted_at` (0: the journal holds its whole history)
    compacted: int = 0
    compacted_at: float | None = None
    # runs launched, failed, lost over the whole history (a compaction's checkpoint carries
    # them: the observer's counters never go down)
    run_totals: list[int] = field(default_factory=lambda: [0, 0, 0])

    def __post_init__(self) -> None:
        self._grow(self.total)
        self.counts = {state: 0 for state in TaskState}
        self.counts[TaskState.PENDING] = self.total

    def _grow(self, total: int) -> None:
        extra = total - len(self.states)
        if extra > 0:
            # array * n repeats in C: a 100,000-job table in microseconds, not a list of n
            self.states.extend(array("b", [_CODE[TaskState.PENDING]]) * extra)
            self.attempts.extend(array("H", [0]) * extra)
            self.exit_codes.extend(array("i", [_NO_EXIT]) * extra)

    # -- queries -------------------------------------------------------------------------------

    @property
    def terminal(self) -> bool:
        return self.state in TASK_TERMINAL

    def job_state(self, job: int) -> TaskState:
        code: int = self.states[job]
        return _CODES[code]

    def job(self, job: int) -> TaskRuntime | None:
        return self.jobs.get(job)

    def summary(self, job: int) -> JobSummary:
        code = self.exit_codes[job]
        return JobSummary(job, self.job_state(job), self.attempts[job], None if code == _NO_EXIT else code)

    def retry_set(self) -> set[int]:
        """Jobs waiting for a retry."""
        return set(self.retry_due)

    def summaries(self) -> Iterable[JobSummary]:
        return (self.summary(j) for j in range(self.total))

    def task_shape(self, job: int) -> Task:
        """The task a job's runtime holds (fold_task, else task_for): its text may be unrendered."""
        return self.task_for(job) if self.fold_task is None else self.fold_task(job)

    def params_between(self, start: int, stop: int) -> Iterable[dict[str, Any]]:
        """The parameters of jobs [start, stop), in order: params_of of each, in bulk."""
        if self.params_rows is not None:
            return self.params_rows(start, stop)
        return map(self.params_of, range(start, stop))

    def runtime(self, job: int) -> TaskRuntime:
        rt = self.jobs.get(job)
        if rt is None:
            if not 0 <= job < self.total:
                raise FoldError(f"record for job {job}, but the journal has {self.total} jobs")
            rt = TaskRuntime(job, self.task_for(job) if self.fold_task is None else self.fold_task(job))
            if self.run_numbers:
                rt.next_run = self.run_numbers.pop(job, rt.next_run)
            rt.state = _CODES[self.states[job]]
            rt.attempt = self.attempts[job]
            self.jobs[job] = rt
        return rt

    # -- the fold ------------------------------------------------------------------------------

    def apply(self, record: Record) -> None:
        # exact types first (records are final structs; mypy narrows on `type(x) is`): the
        # two commonest records are most of a replay's time (bench/replay.py)
        if type(record) is RunUpdate:
            job = record.job
            (self.jobs.get(job) or self.runtime(job)).apply_run(record)
            counted = _TOTALS.get(record.state)
            if counted is not None:
                self.run_totals[counted] += 1
            if record.exit_code is not None:
                self.exit_codes[job] = record.exit_code
            self.dirty.add(job)
        elif type(record) is Transition:
            if record.job == ENSEMBLE:
                self._apply_own(record)
            else:
                self._apply_job(record)
        elif isinstance(record, Signal):
            self.runtime(record.job).apply(record)
            self.dirty.add(record.job)
        elif isinstance(record, Request):
            apply_request(self, record)
        elif isinstance(record, JobsAdded):
            if record.first != self.total:
                raise FoldError(f"jobs added at {record.first}, expected {self.total}")
            self.added.append(record)
            self.total += len(record.params)
            self._grow(self.total)
            self.counts[TaskState.PENDING] += len(record.params)
            if self.state in TASK_TERMINAL:
                raise FoldError("jobs added to an ensemble that has ended")
        elif isinstance(record, Submitted):
            ids = record.ids or [record.backend_id] * len(record.jobs)
            for job, ident in zip(record.jobs, ids, strict=True):
                self.submitted[job] = ident
        elif isinstance(record, Attached):
            self.supervisors.append(record)
        elif isinstance(record, Note):
            self.notes.append(record)
        elif isinstance(record, Opened):
            self.opened = record
        elif isinstance(record, Compacted):  # the head is taken apart before the fold (compaction)
            raise FoldError("a checkpoint record that is not at the head of the journal")

    def move(self, new: TaskState) -> None:
        """The ensemble's own state changes (a plain task's mirrors its job 0, checked there)."""
        moving = new is not self.state
        if moving and self.kind == JournalKind.ENSEMBLE and new not in ENSEMBLE_TRANSITIONS[self.state]:
            raise FoldError(f"ensemble {self.state} -> {new} is not allowed")
        self.state = new

    def _apply_own(self, rec: Transition) -> None:
        self.move(TaskState(rec.state))
        if rec.reason:
            self.reason = rec.reason
        if self.state is TaskState.ACTIVE and self.started_at is None:
            self.started_at = rec.at
        if self.state in TASK_TERMINAL:
            self.finished_at = rec.at

    def _apply_job(self, rec: Transition) -> None:
        job = rec.job
        if rec.cause is Cause.HEARTBEAT and job in self.submitted:
            self.abandoned.add(self.submitted[job])
        rt = self.jobs.get(job) or self.runtime(job)
        before = rt.state
        rt.apply_transition(rec)
        after = rt.state
        if rec.exit_code is not None:
            self.exit_codes[job] = rec.exit_code
        if job >= self.next_new:
            self.next_new = job + 1
        self.states[job] = _CODE[after]
        self.attempts[job] = rt.attempt
        counts = self.counts
        counts[before] -= 1
        counts[after] += 1
        if self.kind == JournalKind.TASK:
            self._apply_own(rec)
        if before is TaskState.PENDING and after is not TaskState.PENDING and self.retry_due:
            self.retry_due.pop(job, None)
        if after in TASK_TERMINAL:
            self.live.discard(job)
            if self._ended(rt, after):
                return  # forgotten
        elif after in _HOLDING:
            self.live.add(job)
        else:
            self.live.discard(job)
            if after is TaskState.PENDING and before in TASK_TERMINAL:
                self._retry_later(rt, rec)
        self.dirty.add(job)

    def _retry_later(self, rt: TaskRuntime, rec: Transition) -> None:
        """A new attempt (PENDING after an end): due after a backoff that doubles at each
        attempt, capped at a minute."""
        job = rt.job
        cause = cause_of(rec)
        if cause is Cause.REQUEUE:
            self.requeues[job] = self.requeues.get(job, 0) + 1
        delay = 0.0 if cause is Cause.RETRY_FAILED else self.policy.retry_backoff
        # a float power, its exponent bounded: 2 ** 1024 as an int does not convert to a
        # float (a job's 1025th attempt crashed every fold of the journal, recover included)
        delay = min(60.0, delay * 2.0 ** min(max(0, rt.attempt - 1), 1000))
        heapq.heappush(self.retry_at, (rec.at + delay, job))
        self.retry_due[job] = rec.at + delay
        self.failed_jobs.discard(job)

    def _ended(self, rt: TaskRuntime, after: TaskState) -> bool:
        """A job reached an end: a failure is retried or counted; True if its runtime was
        forgotten (finished jobs keep only their row of the job table)."""
        job = rt.job
        if self.beats:
            self.beats.pop(job, None)
        if self.yielded:
            self.yielded.discard(job)
        retry = after is not TaskState.SUCCESS and self.may_retry(rt)  # only a failure may
        if after is not TaskState.SUCCESS and not retry:
            self.failed_jobs.add(job)
        if self.keep_finished or retry:
            return False
        if after is not TaskState.SUCCESS and rt.next_run:
            # `--retry-failed` may start it again: its run numbers must go on
            self.run_numbers[job] = rt.next_run
        del self.jobs[job]
        self.dirty.discard(job)
        return True

    def retries_used(self, rt: TaskRuntime) -> int:
        """Attempts paid by the retry budget: requeues have their own (core/outcome.py)."""
        return rt.attempt - self.requeues.get(rt.job, 0)

    def may_retry(self, rt: TaskRuntime) -> bool:
        return (
            rt.state in (TaskState.FAILED, TaskState.LOST)
            and self.retries_used(rt) < self.policy.retries
            and self.halted is Halted.NONE
            and not self.kill_requested
        )

    def halt_for(self, why: Halted) -> Halted:
        """The first reason to halt is the one kept."""
        return why if self.halted is Halted.NONE else self.halted

    def decide(self, now: float) -> Decision:
        """Records to write next. Call until it returns none; each call sees the last applied."""
        return decide(self, now)

    def beat(self, job: int, now: float) -> None:
        """A heartbeat from a job; kept in memory only (a recovery restarts the watchdog)."""
        if job in self.live:
            self.beats[job] = now

    # -- decisions -----------------------------------------------------------------------------


def fold(records: Iterable[Record], supervision: Supervision) -> Supervision:
    for record in records:
        supervision.apply(record)
    return supervision
