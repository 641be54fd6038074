"""The state machines of runs, tasks (and an ensemble's jobs) and ensembles, as one table each.

The folds check every transition against these tables: core/task.py for a task (or job) and
its runs, core/supervision.py for an ensemble as a whole; a property test proves that
no fold of any record sequence gets past them (tests/core/test_transitions.py). The README
renders them. Names are part of the user contract: they appear in the journal, the CLI, `--json`.
"""

from __future__ import annotations

from enum import StrEnum

ENSEMBLE = -1  # the job number of records about an ensemble as a whole (not one of its jobs)


class RunState(StrEnum):
    WAITING = "WAITING"
    LAUNCHING = "LAUNCHING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    KILLED = "KILLED"
    LOST = "LOST"


class TaskState(StrEnum):
    PENDING = "PENDING"  # not started yet (an ensemble's queued job, or a job awaiting retry)
    SUBMITTED = "SUBMITTED"  # handed to a scheduler (Slurm), not running yet
    ACTIVE = "ACTIVE"
    CLEANING = "CLEANING"
    FINALIZING = "FINALIZING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    KILLED = "KILLED"
    LOST = "LOST"


class Halted(StrEnum):
    """Why an ensemble launches no more jobs (NONE: it does). Decisions compare the member;
    its value is the display text (status, the ensemble's end reason, checkpoints hold it)."""

    NONE = ""
    KILLED = "killed"  # `corral kill`
    LOST = "lost"  # `corral lose`
    DRAINED = "drained"  # an executor drains: running jobs go on
    POLICY = "halt policy"  # the halt policy tripped


_RUN_ENDS = {RunState.SUCCESS, RunState.FAILED, RunState.KILLED, RunState.LOST}

RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.WAITING: frozenset({RunState.LAUNCHING}),
    RunState.LAUNCHING: frozenset({RunState.RUNNING, RunState.PAUSED} | _RUN_ENDS),
    RunState.RUNNING: frozenset({RunState.PAUSED} | _RUN_ENDS),
    RunState.PAUSED: frozenset({RunState.RUNNING} | _RUN_ENDS),
    RunState.SUCCESS: frozenset(),
    RunState.FAILED: frozenset(),
    RunState.KILLED: frozenset(),
    RunState.LOST: frozenset(),
}

_TASK_ENDS = {TaskState.SUCCESS, TaskState.FAILED, TaskState.KILLED, TaskState.LOST}

TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.PENDING: frozenset({TaskState.SUBMITTED, TaskState.ACTIVE} | _TASK_ENDS),
    TaskState.SUBMITTED: frozenset({TaskState.PENDING, TaskState.ACTIVE} | _TASK_ENDS),
    TaskState.ACTIVE: frozenset({TaskState.CLEANING, TaskState.FINALIZING} | _TASK_ENDS),
    TaskState.CLEANING: frozenset({TaskState.FINALIZING} | _TASK_ENDS),
    TaskState.FINALIZING: frozenset(_TASK_ENDS),
    # An ensemble retries a job that ended badly: a new attempt starts PENDING.
    TaskState.SUCCESS: frozenset(),
    TaskState.FAILED: frozenset({TaskState.PENDING}),
    TaskState.KILLED: frozenset({TaskState.PENDING}),
    TaskState.LOST: frozenset({TaskState.PENDING}),
}

# An ensemble as a whole: it starts, it ends, and `corral run --retry-failed` (a Request, not a
# Transition) reopens an ended one.
ENSEMBLE_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.PENDING: frozenset({TaskState.ACTIVE} | _TASK_ENDS),
    TaskState.ACTIVE: frozenset(_TASK_ENDS),
    TaskState.SUCCESS: frozenset({TaskState.ACTIVE}),
    TaskState.FAILED: frozenset({TaskState.ACTIVE}),
    TaskState.KILLED: frozenset({TaskState.ACTIVE}),
    TaskState.LOST: frozenset({TaskState.ACTIVE}),
}

RUN_LIVE = frozenset({RunState.LAUNCHING, RunState.RUNNING, RunState.PAUSED})
RUN_TERMINAL = frozenset(_RUN_ENDS)
TASK_TERMINAL = frozenset(_TASK_ENDS)
TASK_LIVE = frozenset({TaskState.ACTIVE, TaskState.CLEANING, TaskState.FINALIZING})
