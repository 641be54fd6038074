"""ROOT/ID/checkpoint: the fold of a journal's committed prefix, so that readers and `recover`
replay only the records after it.

    file = b"CORRALK\\0" u16 version u16 reserved u64 journal_offset u32 prefix_crc u32 crc
           u64 ino u64 size i64 mtime_ns i64 ctime_ns payload

`journal_offset` is a frame boundary of the journal: the checkpoint is the fold of every record
before it. `prefix_crc` is the crc32 of those journal bytes [0, journal_offset); ino, size,
mtime_ns, ctime_ns are the journal's stamp when the checkpoint was written (stamps.py; zeros
when the file was longer than the offset); `crc` covers the header after it and the payload
(a msgpack core.checkpoint.Checkpoint, whose `records` is the number of the journal's frames
before `journal_offset`: a supervisor that resumes from it reads only the frames after it, and
counts on from there). The file is a cache, written by the supervisor with a
rename and no fsync, and never believed over the journal: it is used when the journal carries
the same stamp (untouched since: a finished task's last checkpoint) or when the journal's
prefix still has `prefix_crc` (one sequential read, no decoding). Anything else (missing,
torn, stale, another journal's, a journal damaged under it) and the reader replays the whole
journal instead, which reports a damaged journal with its offset.
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
from corral.core.records import Opened, decode
from corral.core.supervision import Supervision
from corral.journal import first_payload
from corral.journal.watch import Tail
from corral.supervisor import safefs
from corral.supervisor.layout import Layout
from corral.supervisor.stamps import journal_stamp

MAGIC = b"CORRALK\x00"
VERSION = 5  # 3: `records` counts the frames before the offset (2 wrote 0); 4: core.checkpoint
# version 2 (compressed job table, run totals); 5: version 3 (the Opened record is the
# journal's first, not copied). Older files are ignored: a replay
_HEAD = struct.Struct("<8sHHQIIQQqq")
HEADER_SIZE = _HEAD.size  # the payload (a core.checkpoint.Checkpoint) follows
_CHUNK = 1 << 20

Prefix = tuple[int, int]  # (journal offset, crc32 of the journal's bytes before it)


def path_of(layout: Layout) -> str:
    return os.path.join(layout.dir, "checkpoint")


def extend_crc(fd: int, known: Prefix, offset: int) -> int | None:
    """The crc32 of the file's bytes [0, offset), from `known`, a shorter prefix's; None if
    the file ends first."""
    start, crc = known if known[0] <= offset else (0, 0)
    while start < offset:
        chunk = os.pread(fd, min(_CHUNK, offset - start), start)
        if not chunk:
            return None
        crc = zlib.crc32(chunk, crc)
        start += len(chunk)
    return crc


def _header(offset: int, prefix_crc: int, stamp: list[int], payload: bytes) -> bytes:
    fields = struct.pack("<QI", offset, prefix_crc)
    rest = struct.pack("<QQqq", *stamp)
    crc = zlib.crc32(payload, zlib.crc32(rest, zlib.crc32(fields)))
    return _HEAD.pack(MAGIC, VERSION, 0, offset, prefix_crc, crc, *stamp)


def write(
    layout: Layout, sup: Supervision, journal_offset: int, frames: int, at: float, known: Prefix = (0, 0)
) -> Prefix | None:
    """Write the checkpoint of `sup`, the fold of every record before `journal_offset` (the
    journal's first `frames` frames); `known`: the crc of a shorter prefix of the journal (only
    the bytes after it are read).
    Returns (journal_offset, its prefix crc) for the next call.

    The caller guarantees that: no record applied to `sup` is still waiting for its commit.
    Failures are ignored (a cache: readers replay without it).
    """
    payload = encode_checkpoint(capture(sup, frames, at))
    target = path_of(layout)
    tmp = target + ".tmp"
    with contextlib.suppress(OSError):
        jfd = os.open(layout.journal, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            prefix_crc = extend_crc(jfd, known, journal_offset)
            st = os.fstat(jfd)
        finally:
            os.close(jfd)
        if prefix_crc is None:
            return None
        stamp = journal_stamp(st) if st.st_size == journal_offset else [0, 0, 0, 0]
        data = _header(journal_offset, prefix_crc, stamp, payload) + payload
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
        return journal_offset, prefix_crc
    return None


def invalidate(layout: Layout) -> None:
    """Remove the checkpoint before the journal is replaced (compaction): its offsets are of
    the old file. Readers that opened it before check it is still there (see `load`)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path_of(layout))


@dataclass(frozen=True, slots=True)
class Loaded:
    checkpoint: Checkpoint
    journal_offset: int
    journal_inode: int  # the journal file it was checked against
    opened: Opened | None = None  # the journal's first record (the checkpoint names it)


def load(layout: Layout) -> Loaded | None:
    """The checkpoint of this journal, or None when there is none that can be trusted."""
    try:
        fd = os.open(path_of(layout), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read()
        magic, version, _, offset, prefix_crc, _crc, *stamp = _HEAD.unpack_from(data, 0)
        payload = data[_HEAD.size :]
        if magic != MAGIC or version != VERSION:
            return None
        if _header(offset, prefix_crc, stamp, payload) != data[: _HEAD.size]:  # its crc
            return None
        jfd = os.open(layout.journal, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            st = os.fstat(jfd)
            # the journal as it was when the checkpoint was written, or a prefix that still is
            untouched = stamp == journal_stamp(st) and st.st_size == offset
            if not untouched and (st.st_size < offset or extend_crc(jfd, (0, 0), offset) != prefix_crc):
                return None
            first = first_payload(jfd)  # inside the prefix just checked: the Opened record
        finally:
            os.close(jfd)
        # a compaction removes the checkpoint before it renames the new journal in: if ours is
        # still there, the journal we checked it against is the one it was written for
        if os.stat(path_of(layout)).st_ino != os.fstat(fd).st_ino:
            return None
        opened = decode(first) if first is not None else None
        if not isinstance(opened, Opened):
            return None
        return Loaded(decode_checkpoint(payload), offset, st.st_ino, opened)
    except (OSError, struct.error, msgspec.DecodeError, msgspec.ValidationError):
        return None
    finally:
        os.close(fd)


def restored(layout: Layout, keep_finished: bool | None) -> tuple[Supervision, Any, int, int, int] | None:
    """The fold restored from the checkpoint, its Jobs, the journal offset it covers up to, the
    inode of the journal file it is of and the journal's frames before that offset; None when
    there is no usable checkpoint, or one kept with other detail than `keep_finished` asks for."""
    from corral.supervisor.folding import supervision_for

    loaded = load(layout)
    if loaded is None:
        return None
    ckpt = loaded.checkpoint
    opened = ckpt.opened or loaded.opened  # version 3 names the journal's own
    if opened is None or (keep_finished is not None and keep_finished != ckpt.keep_finished):
        return None
    try:
        sup, jobs = supervision_for(opened, layout, ckpt.keep_finished)
        if jobs is not None:
            for added in ckpt.added:
                jobs.space.add(added.params)
        restore(sup, ckpt, loaded.opened)
    except Exception:  # does not fit its own Opened record: not to be trusted, replay instead
        return None
    return sup, jobs, loaded.journal_offset, loaded.journal_inode, ckpt.records


def start(layout: Layout, keep_finished: bool | None) -> tuple[Supervision, Any, Tail] | None:
    """The fold restored from the checkpoint and a Tail positioned just after it, or None."""
    found = restored(layout, keep_finished)
    if found is None:
        return None
    sup, jobs, offset, inode, _ = found
    return sup, jobs, Tail(layout.journal, offset=offset, inode=inode)


def fold_journal(layout: Layout, keep_finished: bool | None = None) -> Supervision:
    """The fold of the whole journal for a reader: from the checkpoint when there is a usable
    one (only the records after it are read), else a replay from the first record."""
    from corral.supervisor.session import replay

    found = restored(layout, keep_finished)
    if found is None:
        return replay(layout, keep_finished)[0]
    sup, jobs, offset, inode, _ = found
    tail = Tail(layout.journal, offset=offset, inode=inode)
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
    from corral.core.batchfold import FoldFailed, fold_batch
    from corral.core.records import Opened
    from corral.supervisor.folding import added_to
    from corral.supervisor.replaying import decode_all, paused_gc, rejected
    from corral.supervisor.session import absorb_head

    records = decode_all(layout, payloads, None, start)
    index = first = 0
    try:
        if records and type(records[0]) is Opened:  # a new fold: a compacted head is restored
            index = 1
            first = absorb_head(sup, jobs, records)
        with paused_gc():
            fold_batch(sup, records[first:], added_to(jobs))
    except OSError:
        raise
    except FoldFailed as failed:
        assert isinstance(failed.__cause__, Exception)
        raise rejected(layout, payloads, None, first + failed.index, failed.__cause__, start=start) from None
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
        self.known: Prefix = (0, 0)  # the journal's prefix crc as of the last checkpoint

    def restart(self) -> None:
        """The journal was replaced (compaction): the next checkpoint is of the new file."""
        self.offset, self.known = 0, (0, 0)

    def maybe(
        self,
        sup: Supervision,
        journal_size: int,
        pending: int,
        now: float,
        *,
        frames: int,
        force: bool = False,
    ) -> None:
        """`frames`: the journal's frames (its `journal_size` bytes hold them)."""
        if pending:
            return  # `sup` holds records not yet durable: they are not before journal_size
        grown = journal_size - self.offset
        if (force and grown > 0) or (grown >= CHECKPOINT_GROWTH and now - self.at >= CHECKPOINT_INTERVAL):
            self.at, self.offset = now, journal_size
            self.known = write(self.layout, sup, journal_size, frames, now, self.known) or (0, 0)
