"""Reading a journal: whole-file reads, raw inspection, and following a live journal.

Readers never lock (the writer's lock is a sibling file), so `status`, `read`, `tail` and the
observer can read while a supervisor writes. They see every committed record; a frame still
being written looks like a torn tail and is simply not returned yet.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from .errors import JournalCorrupt, JournalError
from .frame import FRAME_OVERHEAD, HEADER_SIZE, MAX_FRAME, Stop, scan, scan_journal

# Bounded polling: follow() re-checks the file size at most this often (5 stat calls/s at the
# default). inotify would avoid polling but is not in the standard library.
DEFAULT_POLL = 0.2
MIN_POLL = 0.01


@dataclass(frozen=True, slots=True)
class JournalContents:
    payloads: list[bytes]
    offsets: list[int]  # frame offset of each payload
    end: int  # offset just past the last whole valid frame
    torn_tail: bool  # bytes after `end` are an incomplete write (the writer will drop them)


class RawFrame(NamedTuple):
    offset: int
    length: int
    crc_ok: bool
    payload: bytes


def _read_file(path: str | os.PathLike[str]) -> bytes:
    with open(path, "rb") as f:  # one read of the whole file; scanning does no syscalls
        return f.read()


def read_journal(path: str | os.PathLike[str]) -> JournalContents:
    """Every committed payload in order. Raises JournalCorrupt for corruption mid-file."""
    result = scan_journal(_read_file(path))
    if result.stop is Stop.CORRUPT:
        assert result.error_offset is not None and result.reason is not None
        raise JournalCorrupt(path, result.error_offset, result.reason)
    return JournalContents(result.payloads, result.offsets, result.end, torn_tail=result.stop is Stop.TORN)


def iter_raw(path: str | os.PathLike[str]) -> Iterator[RawFrame]:
    """Every frame as stored, checked or not, for `corral read --raw`.

    Walks past frames with a bad CRC when their length is plausible; stops at an impossible
    length or a frame that runs past the end, yielding the remaining bytes as its payload.
    The header is not checked here (see frame.header_problem).
    """
    buf = _read_file(path)
    head = struct.Struct("<II")
    size = len(buf)
    pos = HEADER_SIZE
    while pos < size:
        if size - pos < FRAME_OVERHEAD:
            yield RawFrame(pos, 0, False, buf[pos:])
            return
        length, crc = head.unpack_from(buf, pos)
        end = pos + FRAME_OVERHEAD + length
        if length == 0 or length > MAX_FRAME or end > size:
            yield RawFrame(pos, length, False, buf[pos + FRAME_OVERHEAD :])
            return
        payload = buf[pos + FRAME_OVERHEAD : end]
        yield RawFrame(pos, length, zlib.crc32(payload) == crc, payload)
        pos = end


def follow(
    path: str | os.PathLike[str],
    *,
    poll: float = DEFAULT_POLL,
    stop: Callable[[], bool],
) -> Iterator[bytes]:
    """Yield every payload from the start of the journal, then new ones as they are committed.

    Polls the file size every `poll` seconds (at least MIN_POLL) while nothing is new; waits
    for a missing journal to appear and for a frame being written to complete. When `stop()`
    returns true, reads once more (so records committed before it are not missed) and returns.
    Raises JournalCorrupt on mid-file corruption.
    """
    interval = max(poll, MIN_POLL)
    fd: int | None = None
    consumed = 0  # file offset just past the last frame yielded (or the header)
    try:
        while True:
            stopping = stop()
            if fd is None:
                try:
                    fd = os.open(path, os.O_RDONLY)
                except FileNotFoundError:
                    if stopping:
                        return
                    time.sleep(interval)
                    continue
            size = os.fstat(fd).st_size
            if size < consumed:
                raise JournalError(f"{os.fspath(path)}: journal shrank while being followed")
            progressed = False
            if size > consumed:
                # Re-read from the last whole frame: a torn tail may be rewritten after repair.
                chunk = os.pread(fd, size - consumed, consumed)
                result = scan_journal(chunk) if consumed == 0 else scan(chunk, 0)
                if result.stop is Stop.CORRUPT:
                    assert result.error_offset is not None and result.reason is not None
                    raise JournalCorrupt(path, consumed + result.error_offset, result.reason)
                if result.end > 0:
                    consumed += result.end
                    progressed = True
                yield from result.payloads
            if stopping:
                return
            if not progressed:
                time.sleep(interval)
    finally:
        if fd is not None:
            os.close(fd)
