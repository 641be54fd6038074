"""What a whole journal does next: `decide(sup, now)` for a task or an ensemble of jobs.

Each job's own next step is core/decisions.py's `decide_task`; here: the ensemble's start and
end, retries of ended jobs, the heartbeat watchdog, the halt policy and admission (job slots
and declared resources; never drop, postpone). Only jobs that changed or are due are looked at
(`Supervision.dirty`, the wake-up heap), so a turn of a 100,000-job ensemble stays small.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from corral.core.decisions import Decision, decide_task
from corral.core.records import Action, Cause, JournalKind, Record, Request, Signal, SignalCause, Transition
from corral.core.states import ENSEMBLE, TASK_TERMINAL, Halted, TaskState
from corral.core.task import SIGTERM, TaskRuntime

if TYPE_CHECKING:
    from corral.core.supervision import Supervision

MIN_FINISHED_FOR_RATE = 10  # a failure rate is judged once this many jobs have finished


def _task_retry_asked(sup: Supervision) -> bool:
    """A plain task ended, and `--retry-failed` asked for its job 0 again."""
    rt = sup.jobs.get(0) if sup.kind == JournalKind.TASK else None
    return rt is not None and rt.retry_requested


def decide(sup: Supervision, now: float) -> Decision:
    """Records to write next. Call until it returns none; each call sees the last applied."""
    out: list[Record] = []
    wake: float | None = None
    if sup.state is TaskState.PENDING:
        if sup.kind == JournalKind.TASK:
            start = TaskState.SUBMITTED if sup.remote else TaskState.ACTIVE
            out.append(Transition(0, start.value, now, "", sup.attempts[0]))
        else:
            out.append(Transition(ENSEMBLE, TaskState.ACTIVE.value, now))
        return Decision(out, None)
    if sup.terminal and not _task_retry_asked(sup):
        return Decision(out, None)
    while sup.wakeups and sup.wakeups[0][0] <= now:
        sup.dirty.add(heapq.heappop(sup.wakeups)[1])
    jobs, sup.dirty = sup.dirty, set()
    for job in sorted(jobs):
        rt = sup.jobs.get(job)
        if rt is None:
            continue
        if rt.terminal:
            if rt.retry_requested:
                rt.retry_requested = False
                out.append(_again(rt, now, Cause.RETRY_FAILED))
            elif sup.may_retry(rt):
                out.append(_again(rt, now, Cause.RETRY))
            continue
        if sup.remote and rt.state is not TaskState.PENDING:
            continue  # the backend moves remote jobs along (SUBMITTED -> ACTIVE -> end)
        d = decide_task(rt, now)
        out.extend(d.records)
        if d.wake_at is not None:
            heapq.heappush(sup.wakeups, (d.wake_at, job))
            wake = d.wake_at if wake is None or d.wake_at < wake else wake
    w = _watchdog(sup, now, out)
    if w is not None:
        wake = w if wake is None or w < wake else wake
    _halt_policy(sup, now, out)
    if out:
        return Decision(out, wake)
    w = _admit(sup, now, out)
    if w is not None:
        wake = w if wake is None or w < wake else wake
    if not out and not sup.live and sup.kind == JournalKind.ENSEMBLE:
        ending = _ending(sup)
        if ending is not None:
            out.append(Transition(ENSEMBLE, ending.value, now, sup.halted.value))
    if sup.wakeups:
        first = sup.wakeups[0][0]
        wake = first if wake is None or first < wake else wake
    return Decision(out, wake)


def _watchdog(sup: Supervision, now: float, out: list[Record]) -> float | None:
    limit = sup.policy.heartbeat
    if not limit:
        return None
    wake: float | None = None
    for job in sup.live:
        rt = sup.jobs[job]
        if rt.state is not TaskState.ACTIVE or rt.paused:
            continue
        last = max(sup.beats.get(job, 0.0), rt.phase_since)
        due = last + limit
        if now < due:
            wake = due if wake is None or due < wake else wake
            continue
        if sup.remote:
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


def _halt_policy(sup: Supervision, now: float, out: list[Record]) -> None:
    halt = sup.policy.halt
    if sup.halted is not Halted.NONE or (halt.failures is None and halt.failure_rate is None):
        return
    failed = len(sup.failed_jobs)
    finished = sum(sup.counts[s] for s in TASK_TERMINAL)
    hit = (halt.failures is not None and failed >= halt.failures) or (
        halt.failure_rate is not None
        and finished >= min(MIN_FINISHED_FOR_RATE, sup.total)
        and finished > 0
        and failed / finished >= halt.failure_rate
    )
    if hit:
        out.append(Request(Action.HALT, now))


def _admit(sup: Supervision, now: float, out: list[Record]) -> float | None:
    """Start queued jobs while slots (and declared resources) allow: never drop, postpone."""
    if sup.halted is not Halted.NONE or sup.paused or sup.lose_requested:
        return None
    limit = sup.policy.job_limit
    busy = len(sup.live) - len(sup.yielded) if sup.yielded else len(sup.live)
    free = (limit - busy) if limit > 0 else 1 << 30
    wake: float | None = None
    holding = sup.live - sup.yielded if sup.yielded else sup.live
    cpus_used = sum(sup.jobs[j].spec.resources.cpus for j in holding) if sup.policy.cpus else 0.0
    memory_used = sum(sup.jobs[j].spec.resources.memory for j in holding) if sup.policy.memory else 0
    # a job alone may exceed the host (it runs by itself); the jobs admitted in this very
    # turn are not in `holding` yet (their Transition is not folded) but count as holding
    occupied = bool(holding)
    while free > 0:
        job = -1
        if sup.retry_at:
            ready, candidate = sup.retry_at[0]
            if sup.retry_due.get(candidate) != ready:
                heapq.heappop(sup.retry_at)  # stale
                continue
            if ready <= now:
                heapq.heappop(sup.retry_at)
                job = candidate
            else:
                wake = ready
        if job < 0:
            if sup.next_new >= sup.total:
                break
            job = sup.next_new
        task = sup.jobs[job].spec if job in sup.jobs else sup.task_for(job)
        need_cpu, need_mem = task.resources.cpus, task.resources.memory
        if sup.policy.cpus and occupied and cpus_used + need_cpu > sup.policy.cpus:
            if job != sup.next_new:
                heapq.heappush(sup.retry_at, (now, job))
                sup.retry_due[job] = now
            break
        if sup.policy.memory and occupied and memory_used + need_mem > sup.policy.memory:
            if job != sup.next_new:
                heapq.heappush(sup.retry_at, (now, job))
                sup.retry_due[job] = now
            break
        cpus_used += need_cpu
        memory_used += need_mem
        occupied = True
        if job == sup.next_new:
            sup.next_new += 1
        attempt = sup.attempts[job]
        start = TaskState.SUBMITTED if sup.remote else TaskState.ACTIVE
        out.append(Transition(job, start.value, now, "", attempt))
        free -= 1
    return wake


def _ending(sup: Supervision) -> TaskState | None:
    """The ensemble's end state once nothing runs, or None while work remains."""
    if sup.hold and not (sup.kill_requested or sup.lose_requested):
        return None
    if sup.retry_due and sup.halted is Halted.NONE:
        return None
    if sup.next_new < sup.total and sup.halted is Halted.NONE:
        return None
    if sup.lose_requested:
        return TaskState.LOST
    if sup.kill_requested:
        return TaskState.KILLED
    if sup.counts[TaskState.SUCCESS] == sup.total:
        return TaskState.SUCCESS
    return TaskState.FAILED


def _again(rt: TaskRuntime, now: float, cause: Cause) -> Transition:
    """A new attempt of an ended job (the reason text repeats the cause for `corral read`)."""
    return Transition(rt.job, TaskState.PENDING.value, now, cause.value, rt.attempt + 1, cause=cause)
