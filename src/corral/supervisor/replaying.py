"""Turning a record that cannot be replayed into one line that names the task and the offset.

Readers (status, read, wait) and recovery fold the same records; whatever goes wrong while
decoding or folding one of them - a FoldError, a record the decoder refuses, a job that does
not exist - becomes RecordRejected with the record's byte offset, never a traceback.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Sequence

from corral.core.records import Record, decode, decode_many
from corral.journal import RecordRejected
from corral.journal.frame import FRAME_OVERHEAD, HEADER_SIZE
from corral.supervisor.layout import Layout


def offset_of(
    payloads: Sequence[bytes], offsets: Sequence[int] | None, index: int, start: int = HEADER_SIZE
) -> int:
    """The byte offset of record `index`; computed from the frame sizes (the first frame at
    `start`) when not given: only on the error path, so the fold pays nothing for it."""
    if offsets is not None:
        return offsets[index]
    return start + sum(FRAME_OVERHEAD + len(p) for p in payloads[:index])


def rejected(
    layout: Layout,
    payloads: Sequence[bytes],
    offsets: Sequence[int] | None,
    index: int,
    exc: Exception,
    start: int = HEADER_SIZE,
) -> RecordRejected:
    cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    cause = " ".join(cause.split())  # one line, whatever the exception's text holds
    offset = offset_of(payloads, offsets, index, start)
    return RecordRejected(layout.journal, f"task {layout.id}", offset, cause)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic collector paused while a replay decodes and folds: records and runtimes
    pile up by the hundred thousand, hold no cycles, and each collection would walk them all
    again (bench/replay.py: ~10 % of a replay). Reference counting still frees what drops."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            # what the replay built goes straight to the oldest generation (freeze, then
            # unfreeze into it), as if it had survived two collections without being walked
            # twice: the next young collection would otherwise walk every record (~15 % of a
            # 550,000-record replay). Full collections still look at it, by their usual rule.
            gc.freeze()
            gc.unfreeze()
            gc.enable()


def decode_all(
    layout: Layout, payloads: Sequence[bytes], offsets: Sequence[int] | None, start: int = HEADER_SIZE
) -> list[Record]:
    """Every record; RecordRejected for the first one the decoder refuses (its offset from
    `offsets`, else from the frame sizes, the first frame at `start`)."""
    try:
        with paused_gc():
            return decode_many(list(payloads))
    except Exception as exc:
        for index, payload in enumerate(payloads):  # cold path: find which one
            try:
                decode(payload)
            except Exception:
                raise rejected(layout, payloads, offsets, index, exc, start) from None
        raise
