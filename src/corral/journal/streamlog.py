"""Streamed output: the logs of many runs in ONE data file plus an index (issue 14).

Many small files hurt shared file systems, so a pilot's launcher can write every job's output
that a worker streams to it into one pair of files per worker:

    NAME.data  = the chunks, appended as they come (raw bytes, nothing else)
    NAME.index = header frame*          (the journal's framing: frame.py)
    header     = b"CORRALX\\0" u16 version u16 reserved
    payload    = u32 job  u32 attempt  u32 run  u64 offset  u32 length  u8 stream  process (utf-8)

An index record says "LENGTH bytes of (job, attempt, process, run, stream) sit at OFFSET of the
data file"; a key's log is its records' ranges in index order. The attempt is the job's, as the
launcher numbers them (a job retried on the same worker starts its runs at 0 again).

The writer appends the data before the index record that points at it (and fsyncs the data
first when asked to sync), so a record never points at bytes that were not written; a reader
still checks every range against the data file's size and waits for the rest. Chunks of one
flush are grouped by key, so a busy run costs one index record per flush, not per chunk.

One writer per pair (flock on the index); any number of readers, without locking, each
following the index from where it stopped. Opening for append cuts a torn index tail (an
interrupted append) and refuses a damaged one; data bytes past the last record (written, never
indexed) are left as they are and never read. A reader of a damaged index serves the records
before the damage and says where it is (`damage`).
"""

from __future__ import annotations

import enum
import fcntl
import os
import stat
import struct
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .errors import JournalError
from .frame import FRAME_OVERHEAD, MAX_FRAME, Stop, encode_frame, scan

MAGIC = b"CORRALX\x00"
VERSION = 1
_HEADER = struct.Struct("<8sHH")
HEADER = _HEADER.pack(MAGIC, VERSION, 0)
_ENTRY = struct.Struct("<IIIQIB")
MAX_PROCESS = MAX_FRAME - _ENTRY.size
FLUSH_BYTES = 1 << 20  # buffered output past which append() flushes by itself


class Stream(enum.IntEnum):
    STDOUT = 1
    STDERR = 2


class StreamKey(NamedTuple):
    job: int
    attempt: int
    process: str
    run: int
    stream: Stream


class StreamLogError(JournalError):
    """A streamed-output file pair that cannot be written or read as asked."""


def data_path(base: Path) -> Path:
    return base.with_name(base.name + ".data")


def index_path(base: Path) -> Path:
    return base.with_name(base.name + ".index")


def encode_entry(key: StreamKey, offset: int, length: int) -> bytes:
    name = key.process.encode()
    if not name or len(name) > MAX_PROCESS:
        raise ValueError(f"process name of {len(name)} bytes")
    return _ENTRY.pack(key.job, key.attempt, key.run, offset, length, int(key.stream)) + name


def decode_entry(payload: bytes) -> tuple[StreamKey, int, int]:
    """(key, offset, length) of one index payload; ValueError for anything else."""
    if len(payload) <= _ENTRY.size:
        raise ValueError(f"index record of {len(payload)} bytes")
    job, attempt, run, offset, length, stream = _ENTRY.unpack_from(payload)
    process = payload[_ENTRY.size :].decode()  # UnicodeDecodeError is a ValueError
    return StreamKey(job, attempt, process, run, Stream(stream)), offset, length


class StreamLogWriter:
    """Appends chunks of output under their key; buffered until flush() (or FLUSH_BYTES)."""

    def __init__(self, base: Path, flush_bytes: int = FLUSH_BYTES) -> None:
        self.base = base
        self.flush_bytes = flush_bytes
        self.pending: dict[StreamKey, list[bytes]] = {}
        self.buffered = 0
        self.index_fd = os.open(index_path(base), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(self.index_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StreamLogError(f"{index_path(base)}: another writer has it open") from None
            self.data_fd = os.open(data_path(base), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except BaseException:
            os.close(self.index_fd)
            raise
        self.data_end = os.lseek(self.data_fd, 0, os.SEEK_END)
        self.sizes: dict[StreamKey, int] = {}  # each key's log size, as indexed
        try:
            self._repair_index()
        except BaseException:
            os.close(self.index_fd)
            os.close(self.data_fd)
            raise

    def _repair_index(self) -> None:
        size = os.fstat(self.index_fd).st_size
        buf = os.pread(self.index_fd, size, 0) if size else b""
        if len(buf) < len(HEADER) and (HEADER.startswith(buf) or buf.count(0) == len(buf)):
            # new, or a torn header (a crash while creating it): write it whole
            os.ftruncate(self.index_fd, 0)
            os.pwrite(self.index_fd, HEADER, 0)
            os.fsync(self.index_fd)
            self.index_end = len(HEADER)
            return
        if buf[: len(HEADER)] != HEADER:
            raise StreamLogError(f"{index_path(self.base)}: not a streamed-output index (bad header)")
        result = scan(buf, len(HEADER))
        if result.stop is Stop.CORRUPT:
            raise StreamLogError(
                f"{index_path(self.base)}: damaged at byte {result.error_offset} ({result.reason}); "
                "it is left as it is: write into a new file"
            )
        end = result.end
        for payload, at in zip(result.payloads, result.offsets, strict=True):
            try:
                key, offset, length = decode_entry(payload)
            except ValueError as exc:
                raise StreamLogError(f"{index_path(self.base)}: bad record at byte {at} ({exc})") from None
            if offset + length > self.data_end:
                # its data never reached the disk (a crash before a sync): it and what follows go
                end = at
                break
            self.sizes[key] = self.sizes.get(key, 0) + length
        if end < len(buf):
            os.ftruncate(self.index_fd, end)
            os.fsync(self.index_fd)
        self.index_end = end

    def append(self, key: StreamKey, data: bytes) -> None:
        if not data:
            return
        if not key.process or len(key.process.encode()) > MAX_PROCESS:
            raise ValueError(f"process name {key.process[:40]!r}: empty or too long")
        self.pending.setdefault(key, []).append(data)
        self.buffered += len(data)
        if self.buffered >= self.flush_bytes:
            self.flush()

    def append_at(self, key: StreamKey, offset: int, data: bytes) -> None:
        """Append DATA, which starts at OFFSET of KEY's log: bytes the log already has (a chunk
        sent again after a reconnect) are dropped. A chunk that would leave a gap is refused
        (ValueError): the sender must resend from `size(key)`."""
        have = self.size(key)
        if offset > have:
            raise ValueError(f"chunk at {offset} of a log of {have} bytes: resend from {have}")
        if offset + len(data) > have:
            self.append(key, data[have - offset :])

    def size(self, key: StreamKey) -> int:
        """KEY's log size, what is buffered included."""
        return self.sizes.get(key, 0) + sum(len(p) for p in self.pending.get(key, ()))

    def flush(self, sync: bool = False) -> None:
        """Write what is buffered: the data, then the index records that point at it."""
        if self.pending:
            chunks, records = [], []
            offset = self.data_end
            for key, parts in self.pending.items():
                data = b"".join(parts)
                chunks.append(data)
                records.append(encode_frame(encode_entry(key, offset, len(data))))
                offset += len(data)
            _write_all(self.data_fd, b"".join(chunks), self.data_end)
            if sync:
                os.fdatasync(self.data_fd)
            index = b"".join(records)
            _write_all(self.index_fd, index, self.index_end)
            self.data_end = offset
            self.index_end += len(index)
            for key, data in zip(self.pending, chunks, strict=True):
                self.sizes[key] = self.sizes.get(key, 0) + len(data)
            self.pending.clear()
            self.buffered = 0
        if sync:
            os.fdatasync(self.index_fd)

    def close(self) -> None:
        try:
            self.flush(sync=True)
        finally:
            os.close(self.data_fd)
            os.close(self.index_fd)

    def __enter__(self) -> StreamLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


@dataclass
class _Ranges:
    """One key's log: logical start of each range, and where it is in the data file."""

    starts: list[int] = field(default_factory=list)
    places: list[tuple[int, int]] = field(default_factory=list)  # (data offset, length)
    size: int = 0


class StreamLogReader:
    """Reads the logs in a streamed-output pair; refresh() takes in what was added since."""

    def __init__(self, base: Path, dir_fd: int | None = None) -> None:
        """DIR_FD: base's directory, opened by the caller (e.g. without following symlinks);
        then only base's name is used. The two files are never followed if they are symlinks."""
        self.base = base
        self.dir_fd = dir_fd
        self.ranges: dict[StreamKey, _Ranges] = {}
        self.index_pos = 0  # the index is read up to here (a frame boundary)
        self.damage: str | None = None
        self.refused = False  # a file is a symlink or not a regular file: nothing is read
        self.refresh()

    def refresh(self) -> bool:
        """Read the index records added since the last call; True if any were."""
        if self.damage is not None:
            return False
        try:
            with os.fdopen(self._open(index_path(self.base)), "rb") as f:
                f.seek(self.index_pos)
                buf = f.read()
            data_fd = self._open(data_path(self.base))
        except FileNotFoundError:
            return False
        except StreamLogError as exc:
            self.damage = str(exc)
            self.refused = True
            return False
        try:
            data_size = os.fstat(data_fd).st_size
        finally:
            os.close(data_fd)
        start = 0
        if self.index_pos == 0:
            if len(buf) < len(HEADER):
                return False  # being created
            if buf[: len(HEADER)] != HEADER:
                self.damage = "not a streamed-output index (bad header)"
                return False
            start = len(HEADER)
        return self._take(buf, start, data_size)

    def _take(self, buf: bytes, start: int, data_size: int) -> bool:
        base = self.index_pos  # where buf starts in the index file
        result = scan(buf, start)
        took = False
        for payload, at in zip(result.payloads, result.offsets, strict=True):
            try:
                key, offset, length = decode_entry(payload)
            except ValueError as exc:
                self.damage = f"bad index record at byte {base + at}: {exc}"
                return took
            if offset + length > data_size:  # its data is not visible yet: read it next time
                self.index_pos = base + at
                return took
            ranges = self.ranges.setdefault(key, _Ranges())
            ranges.starts.append(ranges.size)
            ranges.places.append((offset, length))
            ranges.size += length
            self.index_pos = base + at + FRAME_OVERHEAD + len(payload)
            took = True
        if result.stop is Stop.EOF:
            self.index_pos = base + result.end
        elif result.stop is Stop.CORRUPT:
            self.damage = f"damaged index at byte {base + result.end} ({result.reason})"
        return took  # TORN: a record being written; read it next time

    def _open(self, path: Path) -> int:
        """A read fd of PATH (of its name in dir_fd), refused if a symlink or not a regular file."""
        name = str(path) if self.dir_fd is None else path.name
        try:
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=self.dir_fd)
        except FileNotFoundError:
            raise
        except OSError as exc:  # ELOOP: a symlink
            raise StreamLogError(f"{path}: refused ({exc.strerror})") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StreamLogError(f"{path}: not a regular file")
        os.set_blocking(fd, True)
        return fd

    def logs(self) -> list[StreamKey]:
        """The keys that have output, sorted."""
        return sorted(self.ranges)

    def size(self, key: StreamKey) -> int:
        ranges = self.ranges.get(key)
        return 0 if ranges is None else ranges.size

    def latest(self, job: int, process: str | None, stream: Stream) -> StreamKey | None:
        """The key of the newest run (latest attempt, highest run) of JOB (of PROCESS, if given)
        with output on STREAM."""
        found = [
            k for k in self.ranges if k.job == job and k.stream == stream and process in (None, k.process)
        ]
        return max(found, key=lambda k: (k.attempt, k.run, k.process)) if found else None

    def read(self, key: StreamKey, offset: int = 0, limit: int | None = None) -> bytes:
        """Up to LIMIT bytes (all without) of KEY's log from logical OFFSET."""
        ranges = self.ranges.get(key)
        if ranges is None or offset >= ranges.size or limit == 0:
            return b""
        if offset < 0:
            raise ValueError("offset < 0")
        end = ranges.size if limit is None else min(ranges.size, offset + limit)
        out = []
        with os.fdopen(self._open(data_path(self.base)), "rb") as f:
            i = bisect_right(ranges.starts, offset) - 1
            pos = offset
            while pos < end:
                at, length = ranges.places[i]
                skip = pos - ranges.starts[i]
                take = min(length - skip, end - pos)
                piece = os.pread(f.fileno(), take, at + skip)
                if len(piece) != take:
                    raise StreamLogError(f"{data_path(self.base)}: shorter than its index says")
                out.append(piece)
                pos += take
                i += 1
        return b"".join(out)
