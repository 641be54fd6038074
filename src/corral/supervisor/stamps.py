"""What a cache records of the journal it was made from, and a seal over its own bytes.

status.json and the checkpoint are caches of a journal's fold. A reader trusts one only while
(1) its own bytes are what was written (a crc: `seal`/`unseal`, the checkpoint's header crc),
and (2) the journal is the very file, untouched since (`journal_stamp`: inode, size, mtime,
ctime; ctime cannot be set back by a user, unlike mtime). A cache that disagrees, or that does
not decode, is ignored and the journal replayed: it is never believed over the journal.
"""

from __future__ import annotations

import os
import zlib
from typing import Any

import msgspec

CRC = "crc"


def journal_stamp(st: os.stat_result) -> list[int]:
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _body(data: dict[str, Any]) -> bytes:
    # canonical: keys sorted, msgspec's shortest round-trip floats (decode + encode = same bytes)
    return msgspec.json.encode(data, order="sorted")


def seal(data: dict[str, Any]) -> bytes:
    """`data` as JSON with a crc32 of its canonical form under the key "crc"."""
    return msgspec.json.encode({**data, CRC: zlib.crc32(_body(data))})


def unseal(raw: bytes) -> dict[str, Any] | None:
    """The data `seal` wrote, or None if these bytes are not that (torn, edited, garbage)."""
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    if not isinstance(data, dict):
        return None
    crc = data.pop(CRC, None)
    try:
        body = _body(data)
    except (TypeError, ValueError, OverflowError):
        return None
    return data if isinstance(crc, int) and crc == zlib.crc32(body) else None
