"""Format 1 journals (frames of u32 length, u32 crc32(payload)): read-only.

Format 1 cannot tell a damaged length from a frame cut by a crash, because nothing checks the
length on its own. Its journals are still read (status, read, read --raw) with the old rules,
but never appended to or repaired: `open_for_append` refuses them (see writer.py), so an old
task cannot be recovered by this version; it is left exactly as it is.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

from .frame import LEGACY_VERSION, MAX_FRAME, ScanResult, Stop

_HEAD = struct.Struct("<II")
_OVERHEAD = _HEAD.size


def _zeros_from(buf: bytes, pos: int) -> bool:
    return buf.count(0, pos) == len(buf) - pos


def scan_v1(buf: bytes, start: int) -> ScanResult:
    """The format-1 scan: a frame running past the end is taken for a torn tail."""
    payloads: list[bytes] = []
    offsets: list[int] = []
    size = len(buf)
    pos = start

    def stopped(stop: Stop, reason: str) -> ScanResult:
        error = pos if stop is Stop.CORRUPT else None
        return ScanResult(payloads, offsets, pos, stop, error, reason, version=LEGACY_VERSION)

    while pos < size:
        if size - pos < _OVERHEAD:
            return stopped(Stop.TORN, "partial frame header")
        length, crc = _HEAD.unpack_from(buf, pos)
        if length == 0 or length > MAX_FRAME:
            if _zeros_from(buf, pos):
                return stopped(Stop.TORN, "zero-filled tail")
            return stopped(Stop.CORRUPT, f"impossible length {length}")
        end = pos + _OVERHEAD + length
        if end > size:
            return stopped(Stop.TORN, "partial frame")
        payload = buf[pos + _OVERHEAD : end]
        if zlib.crc32(payload) != crc:
            if _zeros_from(buf, end):
                return stopped(Stop.TORN, "crc mismatch in last frame")
            return stopped(Stop.CORRUPT, "crc mismatch")
        payloads.append(payload)
        offsets.append(pos)
        pos = end
    return ScanResult(payloads, offsets, pos, Stop.EOF, version=LEGACY_VERSION)


def iter_raw_v1(buf: bytes, start: int) -> Iterator[tuple[int, int, bool, bytes]]:
    """(offset, length, crc_ok, payload) of every format-1 frame, stopping at a bad length."""
    size = len(buf)
    pos = start
    while pos < size:
        if size - pos < _OVERHEAD:
            yield pos, 0, False, buf[pos:]
            return
        length, crc = _HEAD.unpack_from(buf, pos)
        end = pos + _OVERHEAD + length
        if length == 0 or length > MAX_FRAME or end > size:
            yield pos, length, False, buf[pos + _OVERHEAD :]
            return
        payload = buf[pos + _OVERHEAD : end]
        yield pos, length, zlib.crc32(payload) == crc, payload
        pos = end
