"""Reading a journal: whole-file reads, raw inspection, and following a live journal.

Readers never lock (the writer's lock is a sibling file), so `status`, `read`, `tail` and the
observer can read while a supervisor writes. They see every committed record; a frame still
being written looks like a torn tail and is simply not returned yet.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from .errors import JournalCorrupt, JournalUnreadable, open_journal_fd
from .frame import (
    FRAME_HEAD,
    FRAME_OVERHEAD,
    HEADER_SIZE,
    LEGACY_VERSION,
    MAX_FRAME,
    Stop,
    header_problem,
    header_version,
    scan,
    scan_journal,
)
from .legacy import iter_raw_v1
from .watch import FileWatch, Tail

# follow() sleeps on inotify (watch.FileWatch), else polls the file size; either way it asks
# its `stop` callback again at least this often.
DEFAULT_POLL = 0.2
MIN_POLL = 0.01


@dataclass(frozen=True, slots=True)
class JournalContents:
    payloads: list[bytes]
    offsets: list[int]  # frame offset of each payload
    end: int  # offset just past the last whole valid frame
    torn_tail: bool  # bytes after `end` are an incomplete write (the writer will drop them)


class RawFrame(NamedTuple):
    """One frame as stored, or one stretch of bytes that is not a valid frame (`problem`)."""

    offset: int
    length: int  # the payload's length; for a damaged stretch, its size in bytes
    crc_ok: bool
    payload: bytes  # a damaged stretch: its bytes, head included
    problem: str | None = None  # why this stretch is not a valid frame
    torn: bool = False  # the stretch is a torn tail (recover would cut it), not corruption


def _read_file(path: str | os.PathLike[str]) -> bytes:
    fd = open_journal_fd(path, os.O_RDONLY)
    try:
        with os.fdopen(fd, "rb") as f:  # one read of the whole file; scanning does no syscalls
            return f.read()
    except OSError as exc:  # EIO and the like: one line, like every other journal error
        raise JournalUnreadable(path, exc) from None


def read_journal(path: str | os.PathLike[str]) -> JournalContents:
    """Every committed payload in order. Raises JournalCorrupt for corruption mid-file."""
    result = scan_journal(_read_file(path))
    if result.stop is Stop.CORRUPT:
        assert result.error_offset is not None and result.reason is not None
        raise JournalCorrupt(path, result.error_offset, result.reason)
    return JournalContents(result.payloads, result.offsets, result.end, torn_tail=result.stop is Stop.TORN)


def first_payload(fd: int) -> bytes | None:
    """The payload of the journal's first frame (its crcs checked), read from the open file
    `fd` with two small reads; None when there is no whole, valid first frame."""
    head = os.pread(fd, HEADER_SIZE + FRAME_OVERHEAD, 0)
    if header_problem(head) is not None or len(head) < HEADER_SIZE + FRAME_OVERHEAD:
        return None
    if header_version(head) == LEGACY_VERSION:  # frames of another shape: a bounded read
        size = HEADER_SIZE + FRAME_OVERHEAD + MAX_FRAME
    else:
        size = HEADER_SIZE + FRAME_OVERHEAD + FRAME_HEAD.unpack_from(head, HEADER_SIZE)[0]
        if size > HEADER_SIZE + FRAME_OVERHEAD + MAX_FRAME:
            return None
    payloads = scan_journal(os.pread(fd, size, 0)).payloads
    return payloads[0] if payloads else None


def iter_raw(path: str | os.PathLike[str]) -> Iterator[RawFrame]:
    """Every valid frame, and every damaged stretch between them, for `corral read --raw`.

    After damage the scan resumes at the next valid frame, so the records after it are shown
    too. A bad header is reported as a damaged 12-byte stretch, then frames are looked for
    after it as usual.
    """
    buf = _read_file(path)
    if not buf:
        return
    problem = header_problem(buf)
    if problem is None and header_version(buf) == LEGACY_VERSION:
        for offset, length, ok, payload in iter_raw_v1(buf, HEADER_SIZE):
            yield RawFrame(offset, length, ok, payload, None if ok else "bad format-1 frame")
        return
    if problem is not None:
        yield RawFrame(0, min(len(buf), HEADER_SIZE), False, buf[:HEADER_SIZE], problem)
    pos = HEADER_SIZE
    while pos < len(buf):
        result = scan(buf, pos)
        for offset, payload in zip(result.offsets, result.payloads, strict=True):
            yield RawFrame(offset, len(payload), True, payload)
        if result.stop is Stop.EOF:
            return
        until = len(buf) if result.resume is None else result.resume
        stretch = buf[result.end : until]
        yield RawFrame(result.end, len(stretch), False, stretch, result.reason, result.stop is Stop.TORN)
        if result.resume is None:
            return
        pos = result.resume


def follow(
    path: str | os.PathLike[str],
    *,
    poll: float = DEFAULT_POLL,
    stop: Callable[[], bool],
) -> Iterator[bytes]:
    """Yield every payload from the start of the journal, then new ones as they are committed.

    Reads only what was appended since the last look (watch.Tail) and sleeps until the file
    changes (inotify, else a poll of its size), at most `poll` seconds (at least MIN_POLL) so
    that `stop` is asked again; waits for a missing journal to appear and for a frame being
    written to complete. When `stop()` returns true, reads once more (so records committed
    before it are not missed) and returns. Raises JournalCorrupt on mid-file corruption.
    """
    interval = max(poll, MIN_POLL)
    where = os.path.abspath(path)
    tail = Tail(where)
    watch = FileWatch(os.path.dirname(where), (os.path.basename(where),), poll=interval)
    try:
        while True:
            stopping = stop()
            try:
                payloads = tail.read_new()
            except FileNotFoundError:
                payloads = []
            yield from payloads
            if stopping:
                return
            if not payloads:
                watch.wait(interval)
    finally:
        tail.close()
        watch.close()
