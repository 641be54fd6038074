"""What `lose` means: give up on everything now, decided here, carried out by the shell.

The shell looks at the machine (which live runs still have a process) and passes that in;
the records come back in the order they must be journaled, BEFORE any signal is sent: a
run still alive is KILLED (with a Signal record for the SIGKILL the shell then sends), a run
with no process left is LOST, every live job is LOST, and so is the ensemble.
"""

from __future__ import annotations

from collections.abc import Set

from corral.core.records import (
    Action,
    JournalKind,
    Record,
    Request,
    RunUpdate,
    Signal,
    SignalCause,
    Transition,
)
from corral.core.states import ENSEMBLE, RunState, TaskState
from corral.core.supervision import Supervision
from corral.core.task import SIGKILL

RunKey = tuple[int, str, int]


def lose_records(sup: Supervision, alive: Set[RunKey], now: float) -> list[Record]:
    """The records of a lose; `alive`: the live runs whose process the shell found alive."""
    out: list[Record] = [Request(Action.LOSE, now)]
    for job in sorted(sup.live):
        rt = sup.jobs[job]
        for run in rt.live_runs():
            key = (job, run.process, run.run)
            if key in alive:
                out.append(Signal(job, run.process, run.run, SIGKILL, now, SignalCause.LOSE))
            state = RunState.KILLED if key in alive else RunState.LOST
            out.append(RunUpdate(job, run.process, run.run, state.value, now, reason="lost"))
        out.append(Transition(job, TaskState.LOST.value, now, "lost", rt.attempt))
    if sup.kind == JournalKind.ENSEMBLE and not sup.terminal:
        out.append(Transition(ENSEMBLE, TaskState.LOST.value, now, "lost"))
    return out
