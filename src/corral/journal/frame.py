"""Framing: the byte layout of a journal file and the scanner that checks it.

    file   = header frame*
    header = b"CORRALJ\\0" u16 version u16 reserved          (12 bytes, little-endian)
    frame  = u32 length  u32 crc32(payload)  payload[length]  (little-endian)

Payloads are opaque bytes (the caller encodes typed records). The scanner classifies how a
scan stopped, because recovery depends on it: a torn tail is the normal result of a crash
during a write and is truncated; corruption with intact data after it is never skipped.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

MAGIC = b"CORRALJ\x00"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sHH")
HEADER: bytes = _HEADER.pack(MAGIC, FORMAT_VERSION, 0)
HEADER_SIZE = _HEADER.size  # 12

_FRAME_HEAD = struct.Struct("<II")
FRAME_OVERHEAD = _FRAME_HEAD.size  # 8
MAX_FRAME = 1024 * 1024  # bounded: a payload larger than this is a bug, not a record


class Stop(enum.Enum):
    """Why a scan stopped."""

    EOF = "eof"  # every byte belongs to a whole, valid frame
    TORN = "torn"  # an incomplete last write; the bytes past `end` can be dropped
    CORRUPT = "corrupt"  # a bad frame with data after it; `error_offset` says where


@dataclass(frozen=True, slots=True)
class ScanResult:
    payloads: list[bytes]
    offsets: list[int]  # offset of each payload's frame, parallel to `payloads`
    end: int  # offset just past the last whole valid frame (or the header)
    stop: Stop
    error_offset: int | None = None  # set when stop is CORRUPT
    reason: str | None = None  # human-readable cause for TORN and CORRUPT


def encode_frame(payload: bytes) -> bytes:
    """Frame one payload; raises ValueError if it is empty or larger than MAX_FRAME."""
    length = len(payload)
    if length == 0:
        # A zero length is how the scanner recognises a zero-filled tail.
        raise ValueError("journal payload must not be empty")
    if length > MAX_FRAME:
        raise ValueError(f"journal payload of {length} bytes exceeds MAX_FRAME ({MAX_FRAME})")
    return _FRAME_HEAD.pack(length, zlib.crc32(payload)) + payload


def _zeros_from(buf: bytes, pos: int) -> bool:
    # ext4 (delayed allocation) can leave a file extended with zeros after a crash.
    return buf.count(0, pos) == len(buf) - pos


def header_problem(buf: bytes) -> str | None:
    """Why the first bytes of `buf` are not a valid header, or None if they are."""
    if len(buf) < HEADER_SIZE:
        return "truncated header"
    magic, version, _reserved = _HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        return "bad magic, not a corral journal"
    if version != FORMAT_VERSION:
        return f"unsupported format version {version}"
    return None


def scan_journal(buf: bytes) -> ScanResult:
    """Check the header of a whole journal file's bytes, then scan its frames.

    An empty buffer is an empty journal without a header yet (EOF, end 0). A partial or
    all-zero header is a torn tail at 0 (a crash while the file was being created).
    """
    size = len(buf)
    if size == 0:
        return ScanResult([], [], 0, Stop.EOF)
    if (size < HEADER_SIZE and HEADER.startswith(buf)) or _zeros_from(buf, 0):
        return ScanResult([], [], 0, Stop.TORN, reason="incomplete header")
    problem = header_problem(buf)
    if problem is not None:
        return ScanResult([], [], 0, Stop.CORRUPT, error_offset=0, reason=problem)
    return scan(buf, HEADER_SIZE)


def scan(buf: bytes, start: int) -> ScanResult:
    """Scan frames in `buf` from `start` (a frame boundary) to the end of `buf`.

    One pass, no copies beyond each payload; offsets in the result are offsets in `buf`.
    """
    unpack = _FRAME_HEAD.unpack_from
    crc32 = zlib.crc32
    payloads: list[bytes] = []
    offsets: list[int] = []
    size = len(buf)
    pos = start
    while pos < size:
        if size - pos < FRAME_OVERHEAD:
            return ScanResult(payloads, offsets, pos, Stop.TORN, reason="partial frame header")
        length, crc = unpack(buf, pos)
        if length == 0 or length > MAX_FRAME:
            if _zeros_from(buf, pos):
                return ScanResult(payloads, offsets, pos, Stop.TORN, reason="zero-filled tail")
            return ScanResult(payloads, offsets, pos, Stop.CORRUPT, pos, f"impossible length {length}")
        end = pos + FRAME_OVERHEAD + length
        if end > size:
            return ScanResult(payloads, offsets, pos, Stop.TORN, reason="partial frame")
        payload = buf[pos + FRAME_OVERHEAD : end]
        if crc32(payload) != crc:
            # A bad last frame (nothing, or only zeros, after it) is a partial write.
            if _zeros_from(buf, end):
                return ScanResult(payloads, offsets, pos, Stop.TORN, reason="crc mismatch in last frame")
            return ScanResult(payloads, offsets, pos, Stop.CORRUPT, pos, "crc mismatch")
        payloads.append(payload)
        offsets.append(pos)
        pos = end
    return ScanResult(payloads, offsets, pos, Stop.EOF)
