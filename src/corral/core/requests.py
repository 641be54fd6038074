"""What a Request record does to the fold of a journal: kill, lose, pause, resume, halt,
retry-failed; and for an executor's ensemble: yield / wake, drain, reopen.

The action (an enum) decides; nothing here reads a reason text. Called by
`Supervision.apply` (core/supervision.py) for every Request, live or replayed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from corral.core.records import Action, JournalKind, Request
from corral.core.states import TASK_TERMINAL, Halted, TaskState

if TYPE_CHECKING:
    from corral.core.supervision import Supervision


def apply_request(sup: Supervision, rec: Request) -> None:
    action = Action(rec.action)  # a record built in memory may still hold the plain text
    targets = [rec.job] if rec.job is not None else sorted(sup.live)
    if action is Action.KILL:
        _kill(sup, rec, targets)
    elif action is Action.LOSE:
        sup.lose_requested = True
        sup.halted = sup.halt_for(Halted.LOST)
    elif action in (Action.PAUSE, Action.RESUME):
        _pause(sup, rec, targets, action is Action.PAUSE)
    elif action in (Action.YIELD, Action.WAKE) and rec.job is not None:
        # a call waiting for its sub-calls: paused like `pause`, and its slot is free
        rt = sup.runtime(rec.job)
        rt.paused = action is Action.YIELD
        if rt.paused:
            sup.yielded.add(rec.job)
        else:
            sup.yielded.discard(rec.job)
        sup.dirty.add(rec.job)
    elif action is Action.DRAIN:  # start nothing new; running jobs go on
        sup.halted = sup.halt_for(Halted.DRAINED)
    elif action is Action.REOPEN:  # an executor's ensemble takes calls again
        sup.halted = Halted.NONE
        sup.kill_requested = False
        if sup.state in TASK_TERMINAL:
            sup.state = TaskState.ACTIVE
            sup.finished_at = None
    elif action is Action.HALT:
        sup.halted = sup.halt_for(Halted.POLICY)
        if sup.policy.halt.mode == "kill":
            for job in targets:
                rt = sup.runtime(job)
                rt.kill_requested = True
                rt.paused = False
                rt.paused_processes.clear()
                sup.dirty.add(job)
    elif action is Action.RETRY_FAILED:
        _retry_failed(sup)


def _kill(sup: Supervision, rec: Request, targets: list[int]) -> None:
    if rec.job is None:
        sup.kill_requested = True
        sup.kill_grace = rec.grace
        sup.halted = sup.halt_for(Halted.KILLED)
    for job in targets:
        rt = sup.runtime(job)
        rt.kill_requested = True
        rt.kill_grace = rec.grace
        # a kill overrides a pause: finalizers must run (the shell CONTs TERMed runs)
        rt.paused = False
        rt.paused_processes.clear()
        sup.dirty.add(job)


def _pause(sup: Supervision, rec: Request, targets: list[int], pause: bool) -> None:
    """Pause or resume: the whole journal, jobs, or one process of them."""
    if rec.job is None and rec.process is None:
        sup.paused = pause
    for job in targets:
        rt = sup.runtime(job)
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
        sup.dirty.add(job)


def _retry_failed(sup: Supervision) -> None:
    """`corral run --retry-failed`: every job that ended badly gets a new attempt."""
    sup.halted = Halted.NONE
    sup.kill_requested = False
    sup.lose_requested = False
    if sup.state in TASK_TERMINAL and sup.kind == JournalKind.ENSEMBLE:
        # an ensemble reopens; a plain task's state follows its job 0 (FAILED -> PENDING)
        sup.move(TaskState.ACTIVE)
        sup.finished_at = None
    for job in range(sup.total):
        if sup.job_state(job) in (TaskState.FAILED, TaskState.LOST, TaskState.KILLED):
            sup.runtime(job).retry_requested = True
            sup.dirty.add(job)
