"""Journal records: every state change of a task or an ensemble, as typed structs.

A record is also a decision: `decide()` returns records, the supervisor makes them durable,
then carries out the effect some of them ask for (a LAUNCHING run is spawned, a Signal is
sent). So the journal holds intent before effect, and replaying it rebuilds the state exactly.

Encoding: msgpack via msgspec, array-like with a tag, so a run update is ~40-70 bytes.
New optional fields may only be added at the end of a struct (old journals still decode).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec

FORMAT_VERSION = 1


class JournalKind(StrEnum):
    """What a journal supervises: one task, or an ensemble of jobs. Its value is the text
    earlier versions wrote in `Opened.kind`, so old journals read the same, byte for byte."""

    TASK = "task"
    ENSEMBLE = "ensemble"


class Opened(msgspec.Struct, tag="open", array_like=True, frozen=True):
    """First record: what this journal supervises. `spec` is the rendered task or the ensemble."""

    kind: JournalKind
    id: str
    spec: dict[str, Any]
    at: float
    host: str
    boot_id: str
    version: int = FORMAT_VERSION
    context: dict[str, Any] = {}  # ports, params, spec file: what `inspect`/`recover` need


class Attached(msgspec.Struct, tag="sup", array_like=True, frozen=True):
    """A supervisor took control (first start or recovery)."""

    pid: int
    start_ticks: int
    at: float
    host: str
    boot_id: str
    recovered: bool = False


class Cause(StrEnum):
    """Why a task (a job) changes state: a new attempt (PENDING after an end: which budget pays,
    the backoff) or leaving ACTIVE (how it ends). Decisions read this, never the display text
    in `reason`. Journals written
    before the field existed carry the cause as the reason text: `cause_of` reads both."""

    NONE = ""
    RETRY = "retry"  # the job failed and has retries left (`retries:`)
    RETRY_FAILED = "retry-failed"  # `corral run --retry-failed`: no backoff, no budget
    REQUEUE = "requeue"  # the batch system ended it through no fault of its own (own budget)
    # why a task leaves ACTIVE (on CLEANING, FINALIZING or its end): decides how it ends
    FAILED = "failed"  # max_failures reached
    DEADLOCK = "deadlock"  # nothing runs and nothing ever can
    KILLED = "killed"  # a kill was asked for
    HEARTBEAT = "heartbeat"  # a remote job stopped heartbeating: FAILED, and its batch job cancelled


_CAUSES = {cause.value: cause for cause in Cause}


class Transition(msgspec.Struct, tag="task", array_like=True, frozen=True):
    """A task (job `job` of an ensemble; job 0 for a plain task) changes state."""

    job: int
    state: str
    at: float
    reason: str = ""
    attempt: int = 0
    exit_code: int | None = None  # a remote job's exit code (its own journal is elsewhere)
    cause: Cause = Cause.NONE


def cause_of(rec: Transition) -> Cause:
    """A transition's cause; journals older than the `cause` field put it in `reason`."""
    if rec.cause is not Cause.NONE:
        return rec.cause
    return _CAUSES.get(rec.reason, Cause.NONE)  # no Enum call: a replay asks once per transition


class RunUpdate(msgspec.Struct, tag="run", array_like=True, frozen=True):
    """A run (one attempt of a process) changes state."""

    job: int
    process: str
    run: int
    state: str
    at: float
    pid: int = 0
    start_ticks: int = 0  # process start time in clock ticks since boot: identity with pid
    exit_code: int | None = None
    reason: str = ""


class SignalCause(StrEnum):
    """Why corral signals a run: decides what its end means (a timeout is a failure, a kill is
    KILLED). The journal holds the value, as it held the same reason text before the enum."""

    NONE = ""
    KILL = "kill"
    LOSE = "lose"
    TIMEOUT = "timeout"
    HEARTBEAT = "heartbeat"  # the heartbeat watchdog (core/admission.py)
    CLEANUP = "cleanup"  # the task is done: its remaining processes are stopped
    FINALIZATION = "finalization"  # finalizers past finalization_wait


class Signal(msgspec.Struct, tag="sig", array_like=True, frozen=True):
    """corral is about to send `sig` to a run's whole process tree (intent before effect)."""

    job: int
    process: str
    run: int
    sig: int
    at: float
    reason: SignalCause = SignalCause.NONE


class Action(StrEnum):
    """What a Request asks for. The journal holds the value, as it did before the enum."""

    KILL = "kill"
    LOSE = "lose"
    PAUSE = "pause"
    RESUME = "resume"
    HALT = "halt"  # the halt policy tripped (core records it)
    RETRY_FAILED = "retry-failed"
    YIELD = "yield"  # an executor's call waits for its sub-calls
    WAKE = "wake"
    DRAIN = "drain"
    REOPEN = "reopen"


class Request(msgspec.Struct, tag="req", array_like=True, frozen=True):
    """A user asked for something: kill, lose, pause, resume, halt, retry-failed; and for an
    executor's ensemble: yield / wake (a call waiting for sub-calls), drain, reopen."""

    action: Action
    at: float
    job: int | None = None  # None = the whole task / ensemble
    process: str | None = None
    grace: float | None = None


class JobsAdded(msgspec.Struct, tag="jobs", array_like=True, frozen=True):
    """Jobs submitted to a live ensemble (dynamic submission): indexes first.. first+len-1."""

    first: int
    params: list[dict[str, Any]]
    at: float


class Submitted(msgspec.Struct, tag="sub", array_like=True, frozen=True):
    """Jobs handed to a scheduler, recorded before the scheduler is relied on."""

    jobs: list[int]
    backend_id: str  # e.g. a Slurm job id, "123" or "123_4"
    at: float
    ids: list[str] = []  # per-job scheduler ids when they differ (array tasks)


class Note(msgspec.Struct, tag="note", array_like=True, frozen=True):
    """Something a person should see in `corral read`: a repaired journal, a recovery summary."""

    text: str
    at: float


class Compacted(msgspec.Struct, tag="ckpt", array_like=True, frozen=True):
    """Part `part` of `parts` of a checkpoint (core.checkpoint) that a compaction wrote at the
    head of a new journal, right after its Opened record, in place of the `records` records
    it folds (the last of them at `at`). A checkpoint larger than a frame is split; readers
    take the parts as one, and only at the head of a journal."""

    part: int
    parts: int
    records: int
    at: float
    data: bytes


Record = (
    Opened | Attached | Transition | RunUpdate | Signal | Request | JobsAdded | Submitted | Note | Compacted
)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Record)


def encode(record: Record) -> bytes:
    return _encoder.encode(record)


def decode(payload: bytes) -> Record:
    record: Record = _decoder.decode(payload)
    return record


def decode_many(payloads: list[bytes]) -> list[Record]:
    """Every payload decoded, in order (a replay's loop: no Python call per record)."""
    dec = _decoder.decode
    return [dec(p) for p in payloads]


def to_json(record: Record) -> dict[str, Any]:
    """A record as a JSON-friendly mapping with its type name, for `corral read --raw --json`."""
    data: dict[str, Any] = {"type": type(record).__name__}
    for field in record.__struct_fields__:
        value = getattr(record, field)
        # a checkpoint's bytes are not for reading: their size is
        data[field] = f"<{len(value)} bytes>" if isinstance(value, bytes) else value
    return data
