"""What a remote job's end means: a batch system's observation -> the job's next record.

A backend (Slurm today; PBS, OAR or LSF would be one more) observes a job in two places: the
batch system's queue (its state, in the backend's own words mapped to `Seen`) and the journal
the job's own supervisor wrote on the node (authoritative for the outcome when it has an end).
`judge` turns both into a `Verdict` through the tables below. Pure: no I/O, no clock reads; the
backend passes what it observed and records what this returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from corral.core.states import TASK_TERMINAL, TaskState


class Seen(StrEnum):
    """A job as a batch system reports it (each backend maps its own states onto these)."""

    QUEUED = "QUEUED"  # waiting, configuring, requeued, held: not running yet
    RUNNING = "RUNNING"  # running, completing, suspended: the node's supervisor holds it
    GONE = "GONE"  # no longer listed (or never seen): only the node's journal can tell
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    PREEMPTED = "PREEMPTED"
    NODE_FAIL = "NODE_FAIL"
    BOOT_FAIL = "BOOT_FAIL"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    DEADLINE = "DEADLINE"
    REVOKED = "REVOKED"  # a federated sibling ran it elsewhere


# What the batch system's end means when the node's journal has no end to report.
ENDS: dict[Seen, TaskState] = {
    Seen.COMPLETED: TaskState.LOST,  # the batch system says done, the journal says nothing
    Seen.FAILED: TaskState.FAILED,
    Seen.CANCELLED: TaskState.KILLED,
    Seen.TIMEOUT: TaskState.FAILED,
    Seen.PREEMPTED: TaskState.LOST,
    Seen.NODE_FAIL: TaskState.LOST,
    Seen.BOOT_FAIL: TaskState.LOST,
    Seen.OUT_OF_MEMORY: TaskState.FAILED,
    Seen.DEADLINE: TaskState.FAILED,
    Seen.REVOKED: TaskState.LOST,
}

# Ends that are no fault of the job: the batch system's word wins over the node's journal
# (its supervisor was killed with it), and the job may be requeued (`slurm.requeue: true`).
REQUEUE: frozenset[Seen] = frozenset({Seen.PREEMPTED, Seen.NODE_FAIL, Seen.BOOT_FAIL, Seen.TIMEOUT})

# Requeues a job may use, counted apart from its retries (`retries:` is about the job's own
# failures; a preemption is not one).
MAX_REQUEUES = 5


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything `judge` needs about one job, gathered by the backend."""

    seen: Seen
    state: TaskState  # the job's state in the launcher's journal
    node_state: TaskState | None = None  # the end the node's journal reached (None: no journal)
    node_exit: int | None = None
    cancelled: bool = False  # corral asked the batch system to cancel it
    recent: bool = False  # submitted moments ago: a job not listed yet is not gone
    requeue: bool = False  # the spec allows requeues
    requeues: int = 0  # requeues this job used
    kill_requested: bool = False  # the whole task / ensemble is being killed
    source: str = "slurm"  # the batch system's name, for reason texts


@dataclass(frozen=True, slots=True)
class Verdict:
    state: TaskState
    reason: str = ""  # display text only
    exit_code: int | None = None
    requeue: bool = False  # record a new attempt (PENDING) right after the end


def judge(obs: Observation) -> Verdict | None:
    """The job's next state, or None when nothing changed (still queued or running)."""
    if obs.seen is Seen.RUNNING:
        return Verdict(TaskState.ACTIVE) if obs.state is TaskState.SUBMITTED else None
    if obs.seen is Seen.QUEUED:
        return None
    node_ended = obs.node_state in TASK_TERMINAL
    if obs.seen is Seen.GONE and not obs.cancelled and obs.recent and not node_ended:
        return None  # the batch system may not list a fresh submission yet
    state, reason = _end(obs, node_ended)
    code = obs.node_exit if node_ended else None
    requeue = obs.requeue and obs.seen in REQUEUE and not obs.kill_requested and obs.requeues < MAX_REQUEUES
    return Verdict(state, reason, code, requeue)


def _end(obs: Observation, node_ended: bool) -> tuple[TaskState, str]:
    seen = obs.seen
    if obs.cancelled and obs.node_state is not TaskState.SUCCESS and seen is Seen.CANCELLED:
        # a cancel signals every process of the job: a run may have died of it before the
        # node's supervisor recorded the kill (its journal then says FAILED, exit 143)
        return TaskState.KILLED, "cancelled"
    if seen in REQUEUE or not node_ended:
        # the node could not finish its journal: the batch system's word decides
        if seen is Seen.GONE:
            if obs.cancelled:
                return TaskState.KILLED, "cancelled"
            return TaskState.LOST, f"gone from {obs.source} without an end in its journal"
        state = ENDS[seen]
        if obs.cancelled and state is not TaskState.FAILED:
            return TaskState.KILLED, "cancelled"
        if seen is Seen.COMPLETED:
            return state, f"{obs.source} COMPLETED but the job's journal has no end"
        return state, f"{obs.source} {seen.value}"
    assert obs.node_state is not None
    return obs.node_state, "" if seen is Seen.GONE else f"{obs.source} {seen.value}"
