"""The fold of a whole journal: one task, or an ensemble of many jobs, and what to do next.

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

from corral.core.records import (
    Action,
    Attached,
    Cause,
    Compacted,
    JobsAdded,
    Note,
    Opened,
    Record,
    Request,
    RunUpdate,
    Signal,
    SignalCause,
    Submitted,
    Transition,
    cause_of,
)
from corral.core.states import ENSEMBLE_TRANSITIONS, TASK_LIVE, TASK_TERMINAL, Halted, TaskState
from corral.core.task import SIGTERM, Decision, FoldError, TaskRuntime, decide_task
from corral.spec.model import Halt, Task

ENSEMBLE = -1  # the job number of records about the ensemble as a whole
MIN_FINISHED_FOR_RATE = 10  # a failure rate is judged once this many jobs have finished
_CODES = list(TaskState)
_CODE = {state: i for i, state in enumerate(_CODES)}
_NO_EXIT = -(2**31)
_HOLDING = TASK_LIVE | {TaskState.SUBMITTED}  # a job in these states holds a slot
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

    kind: str
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

    def _runtime(self, job: int) -> TaskRuntime:
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
            (self.jobs.get(job) or self._runtime(job)).apply_run(record)
            if record.exit_code is not None:
                self.exit_codes[job] = record.exit_code
            self.dirty.add(job)
        elif type(record) is Transition:
            if record.job == ENSEMBLE:
                self._apply_own(record)
            else:
                self._apply_job(record)
        elif isinstance(record, Signal):
            self._runtime(record.job).apply(record)
            self.dirty.add(record.job)
        elif isinstance(record, Request):
            self._apply_request(record)
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

    def _move(self, new: TaskState) -> None:
        """The ensemble's own state changes (a plain task's mirrors its job 0, checked there)."""
        if self.kind == "ensemble" and new is not self.state and new not in ENSEMBLE_TRANSITIONS[self.state]:
            raise FoldError(f"ensemble {self.state} -> {new} is not allowed")
        self.state = new

    def _apply_own(self, rec: Transition) -> None:
        self._move(TaskState(rec.state))
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
        rt = self.jobs.get(job) or self._runtime(job)
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
        if self.kind == "task":
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
        delay = min(60.0, delay * (2 ** max(0, rt.attempt - 1)))
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
        retry = after is not TaskState.SUCCESS and self._may_retry(rt)  # only a failure may
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

    def _retries_used(self, rt: TaskRuntime) -> int:
        """Attempts paid by the retry budget: requeues have their own (core/outcome.py)."""
        return rt.attempt - self.requeues.get(rt.job, 0)

    def _may_retry(self, rt: TaskRuntime) -> bool:
        return (
            rt.state in (TaskState.FAILED, TaskState.LOST)
            and self._retries_used(rt) < self.policy.retries
            and self.halted is Halted.NONE
            and not self.kill_requested
        )

    def _halt(self, why: Halted) -> Halted:
        """The first reason to halt is the one kept."""
        return why if self.halted is Halted.NONE else self.halted

    def _apply_request(self, rec: Request) -> None:
        action = Action(rec.action)  # a record built in memory may still hold the plain text
        targets = [rec.job] if rec.job is not None else sorted(self.live)
        if action is Action.KILL:
            if rec.job is None:
                self.kill_requested = True
                self.kill_grace = rec.grace
                self.halted = self._halt(Halted.KILLED)
            for job in targets:
                rt = self._runtime(job)
                rt.kill_requested = True
                rt.kill_grace = rec.grace
                # a kill overrides a pause: finalizers must run (the shell CONTs TERMed runs)
                rt.paused = False
                rt.paused_processes.clear()
                self.dirty.add(job)
        elif action is Action.LOSE:
            self.lose_requested = True
            self.halted = self._halt(Halted.LOST)
        elif action in (Action.PAUSE, Action.RESUME):
            pause = action is Action.PAUSE
            if rec.job is None and rec.process is None:
                self.paused = pause
            for job in targets:
                rt = self._runtime(job)
                if rec.process is None:
                    rt.paused = pause
                    if not pause:
                        rt.paused_processes.clear()
                elif pause:
                    rt.paused_processes.add(rec.process)
                else:
                    if rt.paused:  # one process resumed out of a task-wide pause: the rest stay
                        rt.paused = False
                        rt.paused_processes.update(rt.processes)
                    rt.paused_processes.discard(rec.process)
                self.dirty.add(job)
        elif action in (Action.YIELD, Action.WAKE) and rec.job is not None:
            # a call waiting for its sub-calls: paused like `pause`, and its slot is free
            rt = self._runtime(rec.job)
            rt.paused = action is Action.YIELD
            if rt.paused:
                self.yielded.add(rec.job)
            else:
                self.yielded.discard(rec.job)
            self.dirty.add(rec.job)
        elif action is Action.DRAIN:  # start nothing new; running jobs go on
            self.halted = self._halt(Halted.DRAINED)
        elif action is Action.REOPEN:  # an executor's ensemble takes calls again
            self.halted = Halted.NONE
            self.kill_requested = False
            if self.state in TASK_TERMINAL:
                self.state = TaskState.ACTIVE
                self.finished_at = None
        elif action is Action.HALT:
            self.halted = self._halt(Halted.POLICY)
            if self.policy.halt.mode == "kill":
                for job in targets:
                    rt = self._runtime(job)
                    rt.kill_requested = True
                    rt.paused = False
                    rt.paused_processes.clear()
                    self.dirty.add(job)
        elif action is Action.RETRY_FAILED:
            self.halted = Halted.NONE
            self.kill_requested = False
            self.lose_requested = False
            if self.state in TASK_TERMINAL and self.kind == "ensemble":
                # an ensemble reopens; a plain task's state follows its job 0 (FAILED -> PENDING)
                self._move(TaskState.ACTIVE)
                self.finished_at = None
            for job in range(self.total):
                if self.job_state(job) in (TaskState.FAILED, TaskState.LOST, TaskState.KILLED):
                    self._runtime(job).retry_requested = True
                    self.dirty.add(job)

    def _task_retry_asked(self) -> bool:
        """A plain task ended, and `--retry-failed` asked for its job 0 again."""
        rt = self.jobs.get(0) if self.kind == "task" else None
        return rt is not None and rt.retry_requested

    def beat(self, job: int, now: float) -> None:
        """A heartbeat from a job; kept in memory only (a recovery restarts the watchdog)."""
        if job in self.live:
            self.beats[job] = now

    # -- decisions -----------------------------------------------------------------------------

    def decide(self, now: float) -> Decision:
        """Records to write next. Call until it returns none; each call sees the last applied."""
        out: list[Record] = []
        wake: float | None = None
        if self.state is TaskState.PENDING:
            if self.kind == "task":
                start = TaskState.SUBMITTED if self.remote else TaskState.ACTIVE
                out.append(Transition(0, start.value, now, "", self.attempts[0]))
            else:
                out.append(Transition(ENSEMBLE, TaskState.ACTIVE.value, now))
            return Decision(out, None)
        if self.terminal and not self._task_retry_asked():
            return Decision(out, None)
        while self.wakeups and self.wakeups[0][0] <= now:
            self.dirty.add(heapq.heappop(self.wakeups)[1])
        jobs, self.dirty = self.dirty, set()
        for job in sorted(jobs):
            rt = self.jobs.get(job)
            if rt is None:
                continue
            if rt.terminal:
                if rt.retry_requested:
                    rt.retry_requested = False
                    out.append(_again(rt, now, Cause.RETRY_FAILED))
                elif self._may_retry(rt):
                    out.append(_again(rt, now, Cause.RETRY))
                continue
            if self.remote and rt.state is not TaskState.PENDING:
                continue  # the backend moves remote jobs along (SUBMITTED -> ACTIVE -> end)
            d = decide_task(rt, now)
            out.extend(d.records)
            if d.wake_at is not None:
                heapq.heappush(self.wakeups, (d.wake_at, job))
                wake = d.wake_at if wake is None or d.wake_at < wake else wake
        w = self._watchdog(now, out)
        if w is not None:
            wake = w if wake is None or w < wake else wake
        self._halt_policy(now, out)
        if out:
            return Decision(out, wake)
        w = self._admit(now, out)
        if w is not None:
            wake = w if wake is None or w < wake else wake
        if not out and not self.live and self.kind == "ensemble":
            ending = self._ending()
            if ending is not None:
                out.append(Transition(ENSEMBLE, ending.value, now, self.halted.value))
        if self.wakeups:
            first = self.wakeups[0][0]
            wake = first if wake is None or first < wake else wake
        return Decision(out, wake)

    def _watchdog(self, now: float, out: list[Record]) -> float | None:
        limit = self.policy.heartbeat
        if not limit:
            return None
        wake: float | None = None
        for job in self.live:
            rt = self.jobs[job]
            if rt.state is not TaskState.ACTIVE or rt.paused:
                continue
            last = max(self.beats.get(job, 0.0), rt.phase_since)
            due = last + limit
            if now < due:
                wake = due if wake is None or due < wake else wake
                continue
            if self.remote:
                # its runs are on another node: the verdict is recorded here, and the shell
                # cancels the batch job (effects.py); the retry policy applies as for any failure
                reason = f"no heartbeat for {limit:g}s"
                failed = TaskState.FAILED.value
                out.append(Transition(job, failed, now, reason, rt.attempt, cause=Cause.HEARTBEAT))
                continue
            for run in rt.live_runs():
                if not run.signal_sent:
                    out.append(Signal(job, run.process, run.run, SIGTERM, now, SignalCause.HEARTBEAT))
        return wake

    def _halt_policy(self, now: float, out: list[Record]) -> None:
        halt = self.policy.halt
        if self.halted is not Halted.NONE or (halt.failures is None and halt.failure_rate is None):
            return
        failed = len(self.failed_jobs)
        finished = sum(self.counts[s] for s in TASK_TERMINAL)
        hit = (halt.failures is not None and failed >= halt.failures) or (
            halt.failure_rate is not None
            and finished >= min(MIN_FINISHED_FOR_RATE, self.total)
            and finished > 0
            and failed / finished >= halt.failure_rate
        )
        if hit:
            out.append(Request(Action.HALT, now))

    def _admit(self, now: float, out: list[Record]) -> float | None:
        """Start queued jobs while slots (and declared resources) allow: never drop, postpone."""
        if self.halted is not Halted.NONE or self.paused or self.lose_requested:
            return None
        limit = self.policy.job_limit
        busy = len(self.live) - len(self.yielded) if self.yielded else len(self.live)
        free = (limit - busy) if limit > 0 else 1 << 30
        wake: float | None = None
        holding = self.live - self.yielded if self.yielded else self.live
        cpus_used = sum(self.jobs[j].spec.resources.cpus for j in holding) if self.policy.cpus else 0.0
        memory_used = sum(self.jobs[j].spec.resources.memory for j in holding) if self.policy.memory else 0
        # a job alone may exceed the host (it runs by itself); the jobs admitted in this very
        # turn are not in `holding` yet (their Transition is not folded) but count as holding
        occupied = bool(holding)
        while free > 0:
            job = -1
            if self.retry_at:
                ready, candidate = self.retry_at[0]
                if self.retry_due.get(candidate) != ready:
                    heapq.heappop(self.retry_at)  # stale
                    continue
                if ready <= now:
                    heapq.heappop(self.retry_at)
                    job = candidate
                else:
                    wake = ready
            if job < 0:
                if self.next_new >= self.total:
                    break
                job = self.next_new
            task = self.jobs[job].spec if job in self.jobs else self.task_for(job)
            need_cpu, need_mem = task.resources.cpus, task.resources.memory
            if self.policy.cpus and occupied and cpus_used + need_cpu > self.policy.cpus:
                if job != self.next_new:
                    heapq.heappush(self.retry_at, (now, job))
                    self.retry_due[job] = now
                break
            if self.policy.memory and occupied and memory_used + need_mem > self.policy.memory:
                if job != self.next_new:
                    heapq.heappush(self.retry_at, (now, job))
                    self.retry_due[job] = now
                break
            cpus_used += need_cpu
            memory_used += need_mem
            occupied = True
            if job == self.next_new:
                self.next_new += 1
            attempt = self.attempts[job]
            start = TaskState.SUBMITTED if self.remote else TaskState.ACTIVE
            out.append(Transition(job, start.value, now, "", attempt))
            free -= 1
        return wake

    def _ending(self) -> TaskState | None:
        """The ensemble's end state once nothing runs, or None while work remains."""
        if self.hold and not (self.kill_requested or self.lose_requested):
            return None
        if self.retry_due and self.halted is Halted.NONE:
            return None
        if self.next_new < self.total and self.halted is Halted.NONE:
            return None
        if self.lose_requested:
            return TaskState.LOST
        if self.kill_requested:
            return TaskState.KILLED
        if self.counts[TaskState.SUCCESS] == self.total:
            return TaskState.SUCCESS
        return TaskState.FAILED


def _again(rt: TaskRuntime, now: float, cause: Cause) -> Transition:
    """A new attempt of an ended job (the reason text repeats the cause for `corral read`)."""
    return Transition(rt.job, TaskState.PENDING.value, now, cause.value, rt.attempt + 1, cause=cause)


def fold(records: Iterable[Record], supervision: Supervision) -> Supervision:
    for record in records:
        supervision.apply(record)
    return supervision
