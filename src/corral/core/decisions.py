"""What one task does next (Thermos semantics): `decide_task(rt, now)` returns the records the
supervisor should write (launches, signals, transitions) and when to wake up again, from the
fold of the task's records (core/task.py). No I/O, no clock: `now` comes from the caller.

Killing means the whole tree: TERM first, KILL after the grace period.
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.core.records import Cause, Record, RunUpdate, Signal, SignalCause, Transition
from corral.core.states import RunState, TaskState
from corral.core.task import BAD_ENDS, DEADLINES, SIGKILL, SIGTERM, ProcessRuntime, Run, TaskRuntime


@dataclass(slots=True)
class Decision:
    records: list[Record]
    wake_at: float | None  # the earliest moment something is due, if nothing else happens


def _wake(current: float | None, at: float) -> float:
    return at if current is None or at < current else current


def _signals(
    rt: TaskRuntime, runs: list[Run], now: float, reason: SignalCause, out: list[Record]
) -> float | None:
    """TERM every run not yet signalled; KILL those still alive past the grace period."""
    wake: float | None = None
    grace = rt.grace()
    for run in runs:
        if run.signal_sent == 0 or run.term_sent_at is None:
            out.append(Signal(rt.job, run.process, run.run, SIGTERM, now, reason))
            wake = _wake(wake, now + grace)
        elif run.signal_sent != SIGKILL:
            due = run.term_sent_at + grace
            if now >= due:
                out.append(Signal(rt.job, run.process, run.run, SIGKILL, now, run.signal_reason or reason))
            else:
                wake = _wake(wake, due)
    return wake


def _launch(rt: TaskRuntime, proc: ProcessRuntime, now: float) -> RunUpdate:
    number = rt.next_run.get(proc.spec.name, 0)
    return RunUpdate(rt.job, proc.spec.name, number, RunState.LAUNCHING.value, now)


def _schedule(
    rt: TaskRuntime, procs: list[ProcessRuntime], now: float, out: list[Record]
) -> tuple[bool, float | None]:
    """Launch what may run now among `procs`. Returns (something can still happen, wake_at)."""
    wake: float | None = None
    live = sum(1 for p in procs if p.live_run is not None)
    limit = rt.spec.max_concurrency
    # hope comes from waited processes only: an ephemeral one (a daemon sidecar) running forever
    # must not hide a deadlock of the others
    hopeful = any(p.live_run is not None and not p.spec.ephemeral for p in procs)
    done = {p.spec.name for p in rt.processes.values() if p.succeeded}
    # longest waiting first (never run, then oldest launch; spec order breaks ties): under
    # max_concurrency a restarting daemon must not starve the processes behind it
    for proc in sorted(procs, key=lambda p: p.last.launched_at if p.last is not None else float("-inf")):
        if proc.live_run is not None or proc.failed or proc.succeeded:
            continue
        if any(dep not in done for dep in proc.spec.after):
            blocked = any(_doomed(rt, dep, {}) for dep in proc.spec.after)
            hopeful = hopeful or not (blocked or proc.spec.ephemeral)
            continue
        hopeful = hopeful or not proc.spec.ephemeral
        last = proc.last
        if last is not None and proc.spec.min_duration > 0:
            ready = last.launched_at + proc.spec.min_duration
            if now < ready:
                wake = _wake(wake, ready)
                continue
        if limit and live >= limit:
            continue
        out.append(_launch(rt, proc, now))
        live += 1
    return hopeful, wake


def _doomed(rt: TaskRuntime, name: str, memo: dict[str, bool]) -> bool:
    """Will never succeed in this attempt: failed, or after a doomed process (transitively,
    so a chain behind a failure is a deadlock, not a wait forever)."""
    if name not in memo:
        memo[name] = False  # a cycle (refused by validation) must not recurse forever
        proc = rt.processes[name]
        memo[name] = not proc.succeeded and (
            proc.failed or any(_doomed(rt, dep, memo) for dep in proc.spec.after)
        )
    return memo[name]


def _timeouts(rt: TaskRuntime, now: float, out: list[Record]) -> float | None:
    wake: float | None = None
    for proc in rt.processes.values():
        run = proc.live_run
        timeout = proc.spec.timeout
        if run is None or run.started_at is None:
            continue
        if run.signal_sent:
            # escalate TERM -> KILL for the runs ended by a deadline: a timeout, or the
            # heartbeat watchdog of admission.py (which only sends the TERM)
            if run.signal_reason in DEADLINES:
                w = _signals(rt, [run], now, run.signal_reason, out)
                if w is not None:
                    wake = _wake(wake, w)
            continue
        if timeout is None:
            continue
        if run.paused_at is not None:
            continue  # paused time does not count; resume re-arms the deadline
        left = timeout - run.active_seconds(now)
        if left <= 0:
            w = _signals(rt, [run], now, SignalCause.TIMEOUT, out)
            if w is not None:
                wake = _wake(wake, w)
        else:
            wake = _wake(wake, now + left)
    return wake


def decide_task(rt: TaskRuntime, now: float) -> Decision:
    """The next records for one task. Call again after they are applied: decisions chain."""
    out: list[Record] = []
    state = rt.state
    regular = [p for p in rt.processes.values() if not p.spec.final]
    finals = [p for p in rt.processes.values() if p.spec.final]
    if state in (TaskState.ACTIVE, TaskState.FINALIZING):
        pause_decisions(rt, now, out)
    if state is TaskState.ACTIVE:
        return _active(rt, regular, finals, now, out)
    if state is TaskState.CLEANING:
        live = [r for p in regular if (r := p.live_run) is not None]
        if live:
            reason = SignalCause.KILL if rt.kill_requested else SignalCause.CLEANUP
            return Decision(out, _signals(rt, live, now, reason, out))
        nxt = TaskState.FINALIZING if finals else _ending(rt)
        out.append(Transition(rt.job, nxt.value, now, rt.reason, rt.attempt, cause=rt.failed_cause))
        return Decision(out, None)
    if state is TaskState.FINALIZING:
        return _finalizing(rt, finals, now, out)
    return Decision(out, None)


def _active(
    rt: TaskRuntime,
    regular: list[ProcessRuntime],
    finals: list[ProcessRuntime],
    now: float,
    out: list[Record],
) -> Decision:
    if rt.kill_requested:
        return Decision([_wind_down(rt, regular, finals, Cause.KILLED, now)], None)
    failed = sum(1 for p in regular if p.failed and p.live_run is None)
    limit = rt.spec.max_failures
    if limit > 0 and failed >= limit:
        return Decision([_wind_down(rt, regular, finals, Cause.FAILED, now)], None)
    waited = [p for p in regular if not p.spec.ephemeral]
    if all(p.finished for p in waited):
        # every waited process succeeded, or failed within the tolerated limit
        return Decision([_wind_down(rt, regular, finals, Cause.NONE, now)], None)
    if rt.paused:
        return Decision(out, None)
    wake = _timeouts(rt, now, out)
    hopeful, w = _schedule(rt, regular, now, out)
    if w is not None:
        wake = _wake(wake, w)
    if not hopeful and not out:
        # nothing runs and nothing ever can: the waited processes are blocked for good
        out.append(_wind_down(rt, regular, finals, Cause.DEADLOCK, now))
    return Decision(out, wake)


def _finalizing(rt: TaskRuntime, finals: list[ProcessRuntime], now: float, out: list[Record]) -> Decision:
    deadline = rt.phase_since + rt.spec.finalization_wait
    live = [r for p in finals if (r := p.live_run) is not None]
    if now >= deadline:
        if live:
            return Decision(out, _signals(rt, live, now, SignalCause.FINALIZATION, out))
        out.append(_end_of(rt, now))
        return Decision(out, None)
    wake: float | None = None
    if not rt.paused:
        wake = _timeouts(rt, now, out)
        hopeful, w = _schedule(rt, finals, now, out)
        if w is not None:
            wake = _wake(wake, w)
        if not hopeful and not out and not live:
            out.append(_end_of(rt, now))
            return Decision(out, None)
    return Decision(out, _wake(wake, deadline))


def pause_decisions(rt: TaskRuntime, now: float, out: list[Record]) -> None:
    """Runs to stop (SIGSTOP) or continue (SIGCONT): the shell acts on these records."""
    for proc in rt.processes.values():
        run = proc.live_run
        if run is None or run.signal_sent or run.state is RunState.LAUNCHING:
            continue
        want = rt.paused or proc.spec.name in rt.paused_processes
        if want and run.state is RunState.RUNNING:
            out.append(RunUpdate(rt.job, run.process, run.run, RunState.PAUSED.value, now, reason="pause"))
        elif not want and run.state is RunState.PAUSED:
            out.append(RunUpdate(rt.job, run.process, run.run, RunState.RUNNING.value, now, reason="resume"))


def _wind_down(
    rt: TaskRuntime, regular: list[ProcessRuntime], finals: list[ProcessRuntime], cause: Cause, now: float
) -> Transition:
    """Leave ACTIVE: CLEANING if runs must be stopped, FINALIZING if finals must run, else the end.

    Skipping the empty phases keeps a one-process job at five records: the hot path of ensembles.
    """
    reason = cause.value  # the display text says the same
    if any(p.live_run is not None for p in regular):
        return Transition(rt.job, TaskState.CLEANING.value, now, reason, rt.attempt, cause=cause)
    if finals:
        return Transition(rt.job, TaskState.FINALIZING.value, now, reason, rt.attempt, cause=cause)
    end = {Cause.KILLED: TaskState.KILLED, Cause.NONE: TaskState.SUCCESS}.get(cause, TaskState.FAILED)
    return Transition(rt.job, end.value, now, reason, rt.attempt, cause=cause)


def _end_of(rt: TaskRuntime, now: float) -> Transition:
    return Transition(rt.job, _ending(rt).value, now, rt.reason, rt.attempt, cause=rt.failed_cause)


def _ending(rt: TaskRuntime) -> TaskState:
    if rt.kill_requested:
        return TaskState.KILLED
    if rt.failed_cause in BAD_ENDS:
        return TaskState.FAILED
    return TaskState.SUCCESS
