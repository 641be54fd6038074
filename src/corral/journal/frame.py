"""Framing: the byte layout of a journal file and the scanner that checks it.

    file   = header frame*
    header = b"CORRALJ\\0" u16 version u16 reserved                  (12 bytes, little-endian)
    frame  = u32 length  u32 crc32(payload)  u32 crc32(the 8 bytes before)  payload[length]

Format 2 (this one) checks every frame's head on its own, so a damaged length can never be
taken for a frame that runs past the end of the file (format 1, `legacy.py`, could not tell).
Payloads are opaque bytes (the caller encodes typed records). The scanner says why it stopped,
because recovery depends on it: a torn tail (what an interrupted append leaves) may be cut;
a damaged frame is corruption, and never skipped or cut (see `damage.py`).
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

MAGIC = b"CORRALJ\x00"
FORMAT_VERSION = 2
LEGACY_VERSION = 1  # read-only: see legacy.py
_HEADER = struct.Struct("<8sHH")
HEADER: bytes = _HEADER.pack(MAGIC, FORMAT_VERSION, 0)
HEADER_SIZE = _HEADER.size  # 12

FRAME_HEAD = struct.Struct("<III")
FRAME_OVERHEAD = FRAME_HEAD.size  # 12
MAX_FRAME = 1024 * 1024  # bounded: a payload larger than this is a bug, not a record


class Stop(enum.Enum):
    """Why a scan stopped."""

    EOF = "eof"  # every byte belongs to a whole, valid frame
    TORN = "torn"  # an incomplete last write; the bytes past `end` can be dropped
    CORRUPT = "corrupt"  # a damaged frame (or header); `error_offset` says where


@dataclass(frozen=True, slots=True)
class ScanResult:
    payloads: list[bytes]
    offsets: list[int]  # offset of each payload's frame, parallel to `payloads`
    end: int  # offset just past the last whole valid frame (or the header)
    stop: Stop
    error_offset: int | None = None  # set when stop is CORRUPT
    reason: str | None = None  # human-readable cause for TORN and CORRUPT
    resume: int | None = None  # CORRUPT: where the next valid frame starts, if one does
    version: int = FORMAT_VERSION  # the file's format (LEGACY_VERSION is read-only)


def encode_frame(payload: bytes) -> bytes:
    """Frame one payload; raises ValueError if it is empty or larger than MAX_FRAME."""
    length = len(payload)
    if length == 0:
        raise ValueError("journal payload must not be empty")
    if length > MAX_FRAME:
        raise ValueError(f"journal payload of {length} bytes exceeds MAX_FRAME ({MAX_FRAME})")
    words = struct.pack("<II", length, zlib.crc32(payload))
    return words + struct.pack("<I", zlib.crc32(words)) + payload


def header_problem(buf: bytes) -> str | None:
    """Why the first bytes of `buf` are not a readable header, or None if they are."""
    if len(buf) < HEADER_SIZE:
        return "truncated header"
    magic, version, _reserved = _HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        return "bad magic, not a corral journal"
    if version not in (FORMAT_VERSION, LEGACY_VERSION):
        return f"unsupported format version {version}"
    return None


def header_version(buf: bytes) -> int:
    """The format version of a header that `header_problem` accepted."""
    version: int = _HEADER.unpack_from(buf, 0)[1]
    return version


def scan_journal(buf: bytes) -> ScanResult:
    """Check the header of a whole journal file's bytes, then scan its frames.

    An empty buffer is an empty journal without a header yet (EOF, end 0). A partial or
    all-zero header is a torn tail at 0 (a crash while the file was being created).
    """
    size = len(buf)
    if size == 0:
        return ScanResult([], [], 0, Stop.EOF)
    problem = header_problem(buf)
    if problem is not None:
        # a torn creation is all zeros: counted only for a bad header (it reads every byte)
        if (size < HEADER_SIZE and HEADER.startswith(buf)) or buf.count(0) == size:
            return ScanResult([], [], 0, Stop.TORN, reason="incomplete header")
        return ScanResult([], [], 0, Stop.CORRUPT, error_offset=0, reason=problem)
    if header_version(buf) == LEGACY_VERSION:
        from .legacy import scan_v1

        return scan_v1(buf, HEADER_SIZE)
    return scan(buf, HEADER_SIZE)


def scan(buf: bytes, start: int) -> ScanResult:
    """Scan format-2 frames in `buf` from `start` (a frame boundary) to the end of `buf`.

    The hot path (every reader, every recovery): one pass, two crc32 calls and one payload
    copy per frame. Offsets in the result are offsets in `buf`.
    """
    unpack = FRAME_HEAD.unpack_from
    crc32 = zlib.crc32
    payloads: list[bytes] = []
    offsets: list[int] = []
    append_payload = payloads.append
    append_offset = offsets.append
    size = len(buf)
    last = size - FRAME_OVERHEAD
    pos = start
    while pos <= last:
        length, crc, head_crc = unpack(buf, pos)
        body = pos + FRAME_OVERHEAD
        end = body + length
        if crc32(buf[pos : pos + 8]) != head_crc or length == 0 or length > MAX_FRAME or end > size:
            break
        payload = buf[body:end]
        if crc32(payload) != crc:
            break
        append_payload(payload)
        append_offset(pos)
        pos = end
    if pos == size:
        return ScanResult(payloads, offsets, pos, Stop.EOF)
    from .damage import classify

    verdict = classify(buf, pos)
    if verdict.torn:
        return ScanResult(payloads, offsets, pos, Stop.TORN, reason=verdict.reason)
    return ScanResult(payloads, offsets, pos, Stop.CORRUPT, pos, verdict.reason, verdict.resume)
