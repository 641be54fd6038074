"""Journal records after a byte offset, as a page or as a live Server-Sent Events stream.

Offsets are those of `corral read --raw`: a record's frame starts at its offset, and a page's
`next` is the offset just past its last record. An offset inside a frame is refused (the frame
scanner would see garbage there, and the CRC tells it so).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from starlette.requests import Request

from corral.core.records import decode, to_json
from corral.journal import JournalCorrupt, Stop, scan
from corral.journal.frame import HEADER_SIZE
from corral.observe.folds import open_journal
from corral.supervisor.layout import Layout

MAX_PAGE_BYTES = 8 * 1024 * 1024
POLL = 0.25  # seconds between size checks of a followed journal


class NotABoundary(ValueError):
    pass


def _record(offset: int, payload: bytes) -> dict[str, Any]:
    return {"offset": offset, **to_json(decode(payload))}


def read_after(layout: Layout, after: int, limit: int) -> dict[str, Any]:
    fd = open_journal(layout)
    try:
        size = os.fstat(fd).st_size
        start = max(after, HEADER_SIZE)
        if start > size:
            raise NotABoundary(f"offset {after} is past the end of the journal ({size} bytes)")
        chunk = os.pread(fd, min(size - start, MAX_PAGE_BYTES), start)
    finally:
        os.close(fd)
    result = scan(chunk, 0)
    if result.stop is Stop.CORRUPT and result.error_offset == 0:
        raise NotABoundary(f"offset {after} is not the start of a record")
    if result.stop is Stop.CORRUPT:
        raise JournalCorrupt(layout.journal, start + (result.error_offset or 0), result.reason or "corrupt")
    records = []
    for offset, payload in zip(result.offsets[:limit], result.payloads[:limit], strict=True):
        records.append(_record(start + offset, payload))
    end = start + (result.offsets[limit] if len(result.payloads) > limit else result.end)
    return {"records": records, "next": end, "size": size}


async def stream(request: Request, layout: Layout, after: int) -> AsyncIterator[dict[str, Any]]:
    """Events until the client goes away; each event's id is the offset to resume from."""
    state = request.app.state
    state.streams += 1
    try:
        position = after
        while not await request.is_disconnected():
            try:
                page = await asyncio.to_thread(read_after, layout, position, 1000)
            except (OSError, ValueError) as exc:
                yield {"event": "error", "data": msgspec.json.encode({"error": str(exc)}).decode()}
                return
            records = page["records"]
            for i, rec in enumerate(records):
                resume = records[i + 1]["offset"] if i + 1 < len(records) else page["next"]
                yield {"event": "record", "id": str(resume), "data": msgspec.json.encode(rec).decode()}
            if page["next"] == position:
                await asyncio.sleep(POLL)
            position = page["next"]
    finally:
        state.streams -= 1
