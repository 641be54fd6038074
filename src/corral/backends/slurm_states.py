"""Slurm's job states and what Slurm says about one job (:class:`SlurmJobInfo`); no policy.

Job ids are strings. An array task is ``"<array id>_<task>"`` (``"123_4"``), a plain job
``"123"``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["TERMINAL_STATES", "SlurmJobInfo", "SlurmState", "is_terminal", "map_state"]


class SlurmState(enum.Enum):
    """Slurm job states (``squeue``/``scontrol``/``sacct`` long names), UNKNOWN for others."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    PREEMPTED = "PREEMPTED"
    NODE_FAIL = "NODE_FAIL"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    REQUEUED = "REQUEUED"
    SUSPENDED = "SUSPENDED"
    COMPLETING = "COMPLETING"
    CONFIGURING = "CONFIGURING"
    RESIZING = "RESIZING"
    REQUEUE_HOLD = "REQUEUE_HOLD"
    REQUEUE_FED = "REQUEUE_FED"
    SPECIAL_EXIT = "SPECIAL_EXIT"
    STOPPED = "STOPPED"
    SIGNALING = "SIGNALING"
    STAGE_OUT = "STAGE_OUT"
    REVOKED = "REVOKED"
    UNKNOWN = "UNKNOWN"


# squeue's compact codes (``%t``), accepted too
_COMPACT: dict[str, SlurmState] = {
    "PD": SlurmState.PENDING,
    "R": SlurmState.RUNNING,
    "CD": SlurmState.COMPLETED,
    "F": SlurmState.FAILED,
    "CA": SlurmState.CANCELLED,
    "TO": SlurmState.TIMEOUT,
    "PR": SlurmState.PREEMPTED,
    "NF": SlurmState.NODE_FAIL,
    "OOM": SlurmState.OUT_OF_MEMORY,
    "BF": SlurmState.BOOT_FAIL,
    "DL": SlurmState.DEADLINE,
    "RQ": SlurmState.REQUEUED,
    "S": SlurmState.SUSPENDED,
    "CG": SlurmState.COMPLETING,
    "CF": SlurmState.CONFIGURING,
    "RS": SlurmState.RESIZING,
    "RH": SlurmState.REQUEUE_HOLD,
    "RF": SlurmState.REQUEUE_FED,
    "SE": SlurmState.SPECIAL_EXIT,
    "ST": SlurmState.STOPPED,
    "SI": SlurmState.SIGNALING,
    "SO": SlurmState.STAGE_OUT,
    "RV": SlurmState.REVOKED,
}

#: The job is over as far as Slurm is concerned (it will not run again unless resubmitted
#: or explicitly requeued).
TERMINAL_STATES: frozenset[SlurmState] = frozenset(
    {
        SlurmState.COMPLETED,
        SlurmState.FAILED,
        SlurmState.CANCELLED,
        SlurmState.TIMEOUT,
        SlurmState.PREEMPTED,
        SlurmState.NODE_FAIL,
        SlurmState.OUT_OF_MEMORY,
        SlurmState.BOOT_FAIL,
        SlurmState.DEADLINE,
        SlurmState.REVOKED,
    }
)


def map_state(slurm_state: str) -> SlurmState:
    """Map Slurm's state text to :class:`SlurmState`.

    Accepts long names (``RUNNING``), decorated ones (``CANCELLED by 0``, sacct's truncated
    ``CANCELLED+``), any case, and squeue's compact codes (``PD``, ``CD``...).
    Anything else is ``UNKNOWN``.
    """
    text = slurm_state.strip()
    if not text:
        return SlurmState.UNKNOWN
    word = text.split()[0].rstrip("+").upper()
    try:
        return SlurmState(word)
    except ValueError:
        return _COMPACT.get(word, SlurmState.UNKNOWN)


def is_terminal(state: SlurmState) -> bool:
    return state in TERMINAL_STATES


@dataclass(frozen=True)
class SlurmJobInfo:
    """What Slurm says about one job or one array task.

    ``job_id`` is the display id (``"123"`` or ``"123_4"``); ``raw_job_id`` is Slurm's own
    numeric id for the record (an array task has its own, e.g. ``"130"`` for ``"123_4"``;
    tasks still pending share the array's id). ``exit_code``/``signal`` come from the wait
    status when Slurm reports one (None when unknown).
    """

    job_id: str
    state: SlurmState
    raw_state: str = ""
    reason: str = ""
    raw_job_id: str = ""
    array_job_id: str | None = None
    array_task_id: int | None = None
    exit_code: int | None = None
    signal: int | None = None
    nodes: str = ""
    name: str = ""
    details: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def terminal(self) -> bool:
        return is_terminal(self.state)
