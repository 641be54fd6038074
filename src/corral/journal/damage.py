"""Telling a torn tail from corruption, and finding the valid frames after damage.

A crash during an append leaves, after the last whole frame, either a prefix of what was being
written (a killed process; the file ends inside a frame) or, after a power loss, some of its
sectors never written, which file systems return as zeros. Anything else - a frame that fails
its checks with a valid frame after it, or bytes that no interrupted append can produce - is
corruption: the caller reports it and changes nothing. Only the torn case may be cut.

This is the cold path (it runs once, where a scan stopped), so it may look at every byte.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from .frame import FRAME_HEAD, FRAME_OVERHEAD, MAX_FRAME

# The unit a disk writes whole: after a power loss a sector holds either what was written or
# zeros (never half of it). The smallest such unit, so that every real torn write is accepted.
SECTOR = 512
_NONZERO = re.compile(b"[^\x00]")
_ZERO_HEAD = bytes(FRAME_OVERHEAD)


@dataclass(frozen=True, slots=True)
class Verdict:
    torn: bool
    reason: str
    resume: int | None = None  # the next valid frame after the damage, if any


def head_ok(buf: bytes, pos: int) -> bool:
    """The frame head at `pos` passes its own crc and has a possible length (fits or not)."""
    if len(buf) - pos < FRAME_OVERHEAD:
        return False
    length, _crc, head_crc = FRAME_HEAD.unpack_from(buf, pos)
    return bool(0 < length <= MAX_FRAME and zlib.crc32(buf[pos : pos + 8]) == head_crc)


def frame_ok(buf: bytes, pos: int) -> bool:
    """A whole valid frame starts at `pos`."""
    if not head_ok(buf, pos):
        return False
    length, crc, _head_crc = FRAME_HEAD.unpack_from(buf, pos)
    end = pos + FRAME_OVERHEAD + length
    return bool(end <= len(buf) and zlib.crc32(buf[pos + FRAME_OVERHEAD : end]) == crc)


def find_frame(buf: bytes, start: int) -> int | None:
    """The first offset >= `start` where a whole valid frame starts, or None.

    A length is at most MAX_FRAME (< 2**24), so a head's 4th byte is zero: only offsets three
    bytes before a zero byte are tried, and a run of zeros is skipped in one step.
    """
    size = len(buf)
    pos = start
    while pos + FRAME_OVERHEAD <= size:
        zero = buf.find(0, pos + 3)
        if zero < 0:
            return None
        pos = zero - 3
        if buf[pos : pos + FRAME_OVERHEAD] == _ZERO_HEAD:
            match = _NONZERO.search(buf, pos)
            if match is None:
                return None
            pos = max(pos + 1, match.start() - FRAME_OVERHEAD + 1)
            continue
        if frame_ok(buf, pos):
            return pos
        pos += 1
    return None


def _zeros_from(buf: bytes, pos: int) -> bool:
    return buf.count(0, pos) == len(buf) - pos


def _unwritten_sectors_from(buf: bytes, first: int, last: int) -> bool:
    """Whether some sector boundary in [first, last] starts a run of zeros to the end of `buf`."""
    boundary = -(-first // SECTOR) * SECTOR
    while boundary <= last and boundary < len(buf):
        if _zeros_from(buf, boundary):
            return True
        boundary += SECTOR
    return False


def classify(buf: bytes, pos: int) -> Verdict:
    """Why the frames in `buf` stop being valid at `pos` (a frame boundary before the end)."""
    size = len(buf)
    if size - pos < FRAME_OVERHEAD:
        return Verdict(True, "partial frame head")  # no room for anything after it
    ok = head_ok(buf, pos)
    length = FRAME_HEAD.unpack_from(buf, pos)[0]
    end = pos + FRAME_OVERHEAD + length
    if ok and end > size:
        # A head that passes its crc states its length truly: a frame still being written (a
        # follower's usual case, so no search of what follows) or cut by a crash.
        return Verdict(True, "partial frame")
    resume = find_frame(buf, pos + 1)
    if resume is not None:
        return Verdict(False, f"damaged frame, valid frames resume at byte {resume}", resume)
    if _zeros_from(buf, pos):
        return Verdict(True, "zero-filled tail")
    if not ok:
        # A head cut by unwritten sectors is torn; a whole head that fails its crc is damaged.
        if _unwritten_sectors_from(buf, pos + 1, pos + FRAME_OVERHEAD - 1):
            return Verdict(True, "frame head in unwritten sectors")
        return Verdict(False, "damaged frame head in the last frame")
    if _unwritten_sectors_from(buf, pos + FRAME_OVERHEAD, end - 1):
        return Verdict(True, "last frame in unwritten sectors")
    return Verdict(False, "crc mismatch in the last frame")
