"""A checkpoint: the fold of a journal's first N records, as one typed value.

Readers and `recover` restore it and apply only the records after it, instead of replaying a
100,000-job journal from its first byte. `capture(sup)` and `restore(sup, checkpoint)` are pure
and exact: restoring a capture and folding the same later records gives the same state as
folding everything (tests/core/test_checkpoint.py checks it on random journals).

The job table (state, attempts, exit code of every job) is three packed arrays, compressed
(version 2; version 1, uncompressed, is still read: a compacted journal's head may be one); no
job's parameters but those of jobs added later (`added`): the others derive from the ensemble's
parameter space, rebuilt from the Opened record. That record (the spec, with an ensemble's
inline params) is not copied either (version 3): it is the journal's first record, named by its
crc (`opened_crc`), and `restore` is given it; versions 1 and 2 carry it. Jobs still in
memory (live, or waiting for a retry decision; every job of a task) keep their whole runtime.
What is not folded from records (heartbeats, wake-up heaps, `dirty`) is not captured: every
restored runtime is marked dirty, so the next `decide()` looks at it again.
"""

from __future__ import annotations

import heapq
import sys
import zlib
from array import array
from dataclasses import fields
from typing import Any

import msgspec

from corral.core.records import Attached, Compacted, JobsAdded, JournalKind, Note, Opened, encode
from corral.core.states import TASK_LIVE, Halted, RunState, TaskState
from corral.core.supervision import Supervision
from corral.core.task import ProcessRuntime, Run, TaskRuntime

CHECKPOINT_VERSION = 3  # 2: the job table's arrays compressed (zlib), run_totals; 3: opened_crc
READABLE = (1, 2, 3)  # a compacted journal's head of version 1 or 2 still reads
_RUN_FIELDS = tuple(f.name for f in fields(Run))
# Supervision fields a checkpoint does not hold: decide-time caches, rebuilt or not journaled
# (a test checks every other field is captured, so a new one cannot be forgotten)
NOT_CAPTURED = frozenset(
    {
        "task_for",
        "policy",
        "remote",
        "params_of",
        "params_rows",
        "fold_task",
        "counts",
        "live",
        "retry_at",
        "dirty",
        "wakeups",
        "beats",
    }
)
_TASK_SCALARS = tuple(
    f.name for f in fields(TaskRuntime) if f.name not in ("job", "spec", "processes", "paused_processes")
)


class ProcessImage(msgspec.Struct, array_like=True, frozen=True):
    name: str
    runs: list[tuple[Any, ...]]  # Run fields in _RUN_FIELDS order
    failures: int
    lost: int
    succeeded: bool
    dropped: int = 0  # earlier runs no longer kept (task.KEPT_RUNS)


class JobImage(msgspec.Struct, array_like=True, frozen=True):
    job: int
    scalars: list[Any]  # TaskRuntime fields in _TASK_SCALARS order
    paused_processes: list[str]
    processes: list[ProcessImage]


class Checkpoint(msgspec.Struct, array_like=True, frozen=True):
    """The state after folding `records` records, the last of them at time `at`."""

    version: int
    records: int
    at: float
    kind: JournalKind  # encoded as the text earlier versions wrote
    id: str
    keep_finished: bool
    opened: Opened | None
    total: int
    next_new: int
    state: str
    reason: str
    started_at: float | None
    finished_at: float | None
    supervisors: list[Attached]
    notes: list[Note]
    states: bytes  # array("b") of TaskState codes, little-endian
    attempts: bytes  # array("H")
    exit_codes: bytes  # array("i")
    retry_due: dict[int, float]
    added: list[JobsAdded]
    submitted: dict[int, str]
    halted: Halted  # encoded as its text, as before the enum
    kill_requested: bool
    kill_grace: float | None
    lose_requested: bool
    paused: bool
    failed_jobs: list[int]
    jobs: list[JobImage]
    run_numbers: dict[int, dict[str, int]] = {}  # forgotten failed jobs' next run numbers
    requeues: dict[int, int] = {}  # job -> requeues used (their own budget)
    hold: bool = False
    yielded: list[int] = []  # paused jobs that gave their slot back
    compacted: int = 0  # records folded into the journal's head checkpoint (compaction)
    compacted_at: float | None = None
    abandoned: list[str] = []  # scheduler ids the watchdog gave up on (cancelled again on recovery)
    run_totals: list[int] = []  # runs launched, failed, lost in the history (version 2)
    # crc32 of the fold's Opened record, encoded (version 3: `opened` is None, the journal's
    # first record is that Opened; 0: the fold had none)
    opened_crc: int = 0


def opened_crc(opened: Opened) -> int:
    """What a checkpoint keeps of the journal's Opened record: enough to know it is the same."""
    return zlib.crc32(encode(opened))


def _packed(values: array) -> bytes:  # type: ignore[type-arg]
    """The array's bytes, little-endian, compressed: a table of 100,000 jobs is 700 KB of
    mostly the same few values (1 attempt, exit code 0), a few KB compressed."""
    if sys.byteorder == "big":  # checkpoints are little-endian wherever they are written
        values = array(values.typecode, values)
        values.byteswap()
    return zlib.compress(values.tobytes(), 1)


def _unpacked(typecode: str, data: bytes, version: int) -> array:  # type: ignore[type-arg]
    values = array(typecode)
    try:
        values.frombytes(zlib.decompress(data) if version >= 2 else data)
    except (zlib.error, ValueError) as exc:
        raise ValueError(f"checkpoint: job table: {exc}") from None
    if sys.byteorder == "big":
        values.byteswap()
    return values


def _code(state: TaskState) -> int:
    return list(TaskState).index(state)


def _job_image(rt: TaskRuntime) -> JobImage:
    return JobImage(
        rt.job,
        [getattr(rt, name) for name in _TASK_SCALARS],
        sorted(rt.paused_processes),
        [
            ProcessImage(
                name,
                [tuple(getattr(run, f) for f in _RUN_FIELDS) for run in p.runs],
                p.failures,
                p.lost,
                p.succeeded,
                p.dropped,
            )
            for name, p in rt.processes.items()
        ],
    )


def capture(sup: Supervision, records: int, at: float) -> Checkpoint:
    """The fold `sup` as a checkpoint of its first `records` records (the last one at `at`)."""
    return Checkpoint(
        CHECKPOINT_VERSION,
        records,
        at,
        sup.kind,
        sup.id,
        sup.keep_finished,
        None,  # the journal's first record: opened_crc names it
        sup.total,
        sup.next_new,
        sup.state.value,
        sup.reason,
        sup.started_at,
        sup.finished_at,
        list(sup.supervisors),
        list(sup.notes),
        _packed(sup.states),
        _packed(sup.attempts),
        _packed(sup.exit_codes),
        dict(sup.retry_due),
        list(sup.added),
        dict(sup.submitted),
        sup.halted,
        sup.kill_requested,
        sup.kill_grace,
        sup.lose_requested,
        sup.paused,
        sorted(sup.failed_jobs),
        [_job_image(rt) for _, rt in sorted(sup.jobs.items())],
        {job: dict(numbers) for job, numbers in sup.run_numbers.items()},
        dict(sup.requeues),
        sup.hold,
        sorted(sup.yielded),
        sup.compacted,
        sup.compacted_at,
        sorted(sup.abandoned),
        list(sup.run_totals),
        opened_crc(sup.opened) if sup.opened is not None else 0,
    )


def _runtime(sup: Supervision, image: JobImage) -> TaskRuntime:
    rt = TaskRuntime(image.job, sup.task_shape(image.job))
    for name, value in zip(_TASK_SCALARS, image.scalars, strict=True):
        setattr(rt, name, value)
    rt.state = TaskState(rt.state)
    rt.next_run = dict(rt.next_run)
    rt.paused_processes = set(image.paused_processes)
    for p in image.processes:
        process = rt.processes.get(p.name)
        if process is None:  # the spec no longer has it: the checkpoint is not for this spec
            raise ValueError(f"checkpoint: job {image.job} has no process {p.name!r}")
        runs = [Run(*values) for values in p.runs]
        for run in runs:
            run.state = RunState(run.state)
        rt.processes[p.name] = ProcessRuntime(process.spec, runs, p.failures, p.lost, p.succeeded, p.dropped)
    return rt


def _opened(ckpt: Checkpoint, given: Opened | None) -> Opened | None:
    """The fold's Opened record: the checkpoint's own (versions 1, 2), else the one given,
    when it is the one the checkpoint names."""
    if ckpt.opened is not None or not ckpt.opened_crc:
        return ckpt.opened
    if given is None or opened_crc(given) != ckpt.opened_crc:
        raise ValueError("checkpoint: of a journal with another Opened record")
    return given


def _jobs_in(states: array, codes: set[int]) -> set[int]:  # type: ignore[type-arg]
    """The jobs whose state code is one of `codes`: a search of the table's bytes (one per
    job) in C, not a Python loop over 100,000 jobs of which a few hold a slot."""
    raw = states.tobytes()
    found: set[int] = set()
    for code in codes:
        needle = bytes([code])
        at = raw.find(needle)
        while at >= 0:
            found.add(at)
            at = raw.find(needle, at + 1)
    return found


def restore(sup: Supervision, ckpt: Checkpoint, opened: Opened | None = None) -> None:
    """Make `sup`, an empty fold of the same journal (same Opened record), the checkpoint's;
    `opened`: the journal's Opened record (default: `sup.opened`), which a checkpoint of
    version 3 names and does not hold.

    Raises ValueError when the checkpoint does not fit (another kind, id, job count or Opened).
    """
    if ckpt.version not in READABLE or ckpt.kind != sup.kind or ckpt.id != sup.id:
        raise ValueError("checkpoint: of another journal or version")
    sup.opened = _opened(ckpt, sup.opened if opened is None else opened)
    for added in ckpt.added:
        sup.apply(added)  # grows the table (the caller has grown the parameter space)
    v = ckpt.version
    states, attempts = _unpacked("b", ckpt.states, v), _unpacked("H", ckpt.attempts, v)
    exit_codes = _unpacked("i", ckpt.exit_codes, v)
    if not len(states) == len(attempts) == len(exit_codes) == sup.total == ckpt.total:
        raise ValueError("checkpoint: job table of another size")
    sup.states, sup.attempts, sup.exit_codes = states, attempts, exit_codes
    codes = list(TaskState)
    sup.counts = {state: 0 for state in TaskState}
    present = set(states)
    for code in present:
        sup.counts[codes[code]] = states.count(code)
    holding = {_code(s) for s in TASK_LIVE | {TaskState.SUBMITTED}}  # jobs that hold a slot
    sup.live = _jobs_in(states, holding & present)
    sup.next_new = ckpt.next_new
    sup.state = TaskState(ckpt.state)
    sup.reason, sup.started_at, sup.finished_at = ckpt.reason, ckpt.started_at, ckpt.finished_at
    sup.supervisors, sup.notes = list(ckpt.supervisors), list(ckpt.notes)
    sup.retry_due = dict(ckpt.retry_due)
    sup.retry_at = [(due, job) for job, due in sup.retry_due.items()]
    heapq.heapify(sup.retry_at)
    sup.submitted = dict(ckpt.submitted)
    sup.halted, sup.kill_requested, sup.kill_grace = ckpt.halted, ckpt.kill_requested, ckpt.kill_grace
    sup.lose_requested, sup.paused = ckpt.lose_requested, ckpt.paused
    sup.failed_jobs = set(ckpt.failed_jobs)
    sup.run_numbers = {job: dict(numbers) for job, numbers in ckpt.run_numbers.items()}
    sup.requeues, sup.hold, sup.yielded = dict(ckpt.requeues), ckpt.hold, set(ckpt.yielded)
    sup.compacted, sup.compacted_at = ckpt.compacted, ckpt.compacted_at
    sup.abandoned = set(ckpt.abandoned)
    if len(ckpt.run_totals) == 3:  # none before version 2: counted from here on
        sup.run_totals = list(ckpt.run_totals)
    sup.jobs = {image.job: _runtime(sup, image) for image in ckpt.jobs}
    sup.dirty = set(sup.jobs)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Checkpoint)


def encode_checkpoint(ckpt: Checkpoint) -> bytes:
    return _encoder.encode(ckpt)


def decode_checkpoint(data: bytes | memoryview) -> Checkpoint:
    """Raises msgspec.DecodeError / ValidationError for bytes that are not a checkpoint."""
    ckpt: Checkpoint = _decoder.decode(data)
    return ckpt


def split(ckpt: Checkpoint, limit: int) -> list[Compacted]:
    """The checkpoint as Compacted records of at most `limit` bytes of it each (a journal frame
    is bounded): a compaction writes them, in order, right after the Opened record."""
    data = encode_checkpoint(ckpt)
    chunks = [data[i : i + limit] for i in range(0, len(data), limit)] or [b""]
    return [Compacted(i, len(chunks), ckpt.records, ckpt.at, chunk) for i, chunk in enumerate(chunks)]


def joined(parts: list[Compacted]) -> Checkpoint:
    """The checkpoint that `parts` (every part, in order) hold. ValueError for parts missing,
    out of order or of different checkpoints, and for bytes that are not a checkpoint."""
    if not parts or [p.part for p in parts] != list(range(parts[0].parts)):
        raise ValueError("checkpoint: parts missing or out of order")
    if any((p.parts, p.records, p.at) != (parts[0].parts, parts[0].records, parts[0].at) for p in parts):
        raise ValueError("checkpoint: parts of different checkpoints")
    try:
        ckpt = decode_checkpoint(b"".join(p.data for p in parts))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"checkpoint: {exc}") from None
    if ckpt.records != parts[0].records:
        raise ValueError("checkpoint: its parts disagree with it")
    return ckpt
