"""ROOT/ID/checkpoint: the fold of a journal's committed prefix, so that readers and `recover`
replay only the records after it.

    file = b"CORRALK\\0" u16 version u16 reserved u64 journal_offset u32 head_crc u32 crc payload

`journal_offset` is a frame boundary of the journal: the checkpoint is the fold of every record
before it. `head_crc` is the crc32 of the journal's first min(offset, 4096) bytes (its header
and Opened record: the journal it belongs to); `crc` covers the payload (a msgpack
core.checkpoint.Checkpoint). The file is a cache, written by the supervisor with a rename and
no fsync: whatever is wrong with it (missing, torn, stale, another journal's) is detected and
the reader replays the whole journal instead. A journal's committed prefix never changes, so a
checkpoint stays valid for as long as its journal file exists.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import msgspec

from corral.core.checkpoint import Checkpoint, capture, decode_checkpoint, encode_checkpoint, restore
from corral.core.supervision import Supervision
from corral.journal.watch import Tail
from corral.supervisor import safefs
from corral.supervisor.layout import Layout

MAGIC = b"CORRALK\x00"
VERSION = 1
_HEAD = struct.Struct("<8sHHQII")
_JOURNAL_HEAD = 4096  # bytes of the journal whose crc names it


def path_of(layout: Layout) -> str:
    return os.path.join(layout.dir, "checkpoint")


def _journal_head_crc(fd: int, offset: int) -> int:
    return zlib.crc32(os.pread(fd, min(offset, _JOURNAL_HEAD), 0))


def write(layout: Layout, sup: Supervision, journal_offset: int, records: int, at: float) -> None:
    """Write the checkpoint of `sup`, the fold of every record before `journal_offset`.

    The caller guarantees that: no record applied to `sup` is still waiting for its commit.
    Failures are ignored (a cache: readers replay without it).
    """
    payload = encode_checkpoint(capture(sup, records, at))
    target = path_of(layout)
    tmp = target + ".tmp"
    with contextlib.suppress(OSError):
        jfd = os.open(layout.journal, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            head = _journal_head_crc(jfd, journal_offset)
        finally:
            os.close(jfd)
        data = _HEAD.pack(MAGIC, VERSION, 0, journal_offset, head, zlib.crc32(payload)) + payload
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        # as private as the task (0600, or 0640 when it is shared with the group: safefs.py)
        fd = safefs.open_new(tmp, os.O_WRONLY | os.O_EXCL, safefs.file_mode(layout.dir))
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, target)


@dataclass(frozen=True, slots=True)
class Loaded:
    checkpoint: Checkpoint
    journal_offset: int


def load(layout: Layout) -> Loaded | None:
    """The checkpoint of this journal, or None when there is none that can be trusted."""
    try:
        fd = os.open(path_of(layout), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read()
        magic, version, _, offset, head, crc = _HEAD.unpack_from(data, 0)
        payload = memoryview(data)[_HEAD.size :]
        if magic != MAGIC or version != VERSION or zlib.crc32(payload) != crc:
            return None
        jfd = os.open(layout.journal, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if os.fstat(jfd).st_size < offset or _journal_head_crc(jfd, offset) != head:
                return None
        finally:
            os.close(jfd)
        return Loaded(decode_checkpoint(payload), offset)
    except (OSError, struct.error, msgspec.DecodeError, msgspec.ValidationError):
        return None


def restored(layout: Layout, keep_finished: bool | None) -> tuple[Supervision, Any, int] | None:
    """The fold restored from the checkpoint, its Jobs, and the journal offset it covers up
    to; None when there is no usable checkpoint, or one kept with other detail than
    `keep_finished` asks for."""
    from corral.supervisor.session import supervision_for

    loaded = load(layout)
    if loaded is None:
        return None
    ckpt = loaded.checkpoint
    if ckpt.opened is None or (keep_finished is not None and keep_finished != ckpt.keep_finished):
        return None
    try:
        sup, jobs = supervision_for(ckpt.opened, layout, ckpt.keep_finished)
        if jobs is not None:
            for added in ckpt.added:
                jobs.space.add(added.params)
        restore(sup, ckpt)
    except Exception:  # does not fit its own Opened record: not to be trusted, replay instead
        return None
    return sup, jobs, loaded.journal_offset


def start(layout: Layout, keep_finished: bool | None) -> tuple[Supervision, Any, Tail] | None:
    """The fold restored from the checkpoint and a Tail positioned just after it, or None."""
    found = restored(layout, keep_finished)
    if found is None:
        return None
    sup, jobs, offset = found
    return sup, jobs, Tail(layout.journal, offset=offset)


def fold_journal(layout: Layout, keep_finished: bool | None = None) -> Supervision:
    """The fold of the whole journal for a reader: from the checkpoint when there is a usable
    one (only the records after it are read), else a replay from the first record."""
    from corral.supervisor.session import replay

    found = restored(layout, keep_finished)
    if found is None:
        return replay(layout, keep_finished)[0]
    sup, jobs, offset = found
    tail = Tail(layout.journal, offset=offset)
    try:
        payloads = tail.read_new()
    finally:
        tail.close()
    if tail.restarted:  # replaced meanwhile (a compaction): the checkpoint was of the old file
        return replay(layout, keep_finished)[0]
    fold_onto(layout, sup, jobs, payloads, offset)
    return sup


def fold_onto(layout: Layout, sup: Supervision, jobs: Any, payloads: list[bytes], start: int) -> list[Any]:
    """Decode and fold `payloads` (the frames from journal offset `start` on) into `sup`; a
    record the decoder or the fold refuses is RecordRejected, naming its offset. Returns the
    records."""
    from corral.supervisor.replaying import decode_all, rejected
    from corral.supervisor.session import _apply

    records = decode_all(layout, payloads, None, start)
    index = 0
    try:
        for index, rec in enumerate(records):  # noqa: B007 (index names the bad record)
            _apply(sup, jobs, rec)
    except OSError:
        raise
    except Exception as exc:
        raise rejected(layout, payloads, None, index, exc, start=start) from None
    return records


CHECKPOINT_INTERVAL = 5.0  # seconds between two checkpoints of a live journal, at most one...
CHECKPOINT_GROWTH = 256 * 1024  # ...and only once the journal grew by this many bytes since


class CheckpointWriter:
    """The supervisor's side: a checkpoint now and then while the journal grows, and one at
    the end, so that every reader of a finished task or ensemble starts from it."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.at = 0.0
        self.offset = 0

    def maybe(
        self, sup: Supervision, journal_size: int, pending: int, now: float, *, force: bool = False
    ) -> None:
        if pending:
            return  # `sup` holds records not yet durable: they are not before journal_size
        grown = journal_size - self.offset
        if (force and grown > 0) or (grown >= CHECKPOINT_GROWTH and now - self.at >= CHECKPOINT_INTERVAL):
            self.at, self.offset = now, journal_size
            write(self.layout, sup, journal_size, 0, now)
