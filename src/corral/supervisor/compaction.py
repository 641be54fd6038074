"""Compaction: a live journal past its threshold is replaced by its fold.

The new journal holds the Opened record, then the checkpoint of everything committed so far
(core.checkpoint, split into Compacted records when it is larger than a frame), and nothing
else: the supervisor compacts between two turns, when no record is pending. The file is
written, synced and renamed over the old one (journal/compact.py); `journal.keep_history`
keeps the old file as ROOT/ID/history/journal.N (N: the records before it) instead.

Readers take the head apart with `absorb_head` before folding the rest.

The reapers' ledger is kept bounded beside it (ledger.py): rewritten to the lines of runs
still live after each compaction, and when it passed its own threshold (LEDGER_AT, checked
every LEDGER_EVERY records).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from corral.core.checkpoint import capture, joined, restore, split
from corral.core.records import Compacted, Opened, Record, decode, encode
from corral.core.supervision import Supervision
from corral.journal import MAX_FRAME, JournalWriter
from corral.journal import compact as journal_compact
from corral.journal.frame import FRAME_HEAD, FRAME_OVERHEAD, HEADER_SIZE
from corral.spec.model import Journal
from corral.supervisor import checkpoints, ledger, safefs
from corral.supervisor.layout import Layout

PART = MAX_FRAME - 4096  # checkpoint bytes per Compacted record: room for its other fields
HISTORY = "history"  # ROOT/ID/history/journal.N: old journals kept (journal.keep_history)
LEDGER_EVERY = 256  # records between two looks at the ledger's size

log = logging.getLogger(__name__)


def head_parts(records: Sequence[Record]) -> list[Compacted]:
    """The Compacted records right after the Opened record ([] for a whole history)."""
    if len(records) < 2 or type(records[1]) is not Compacted:
        return []
    count = records[1].parts
    parts = [r for r in records[1 : 1 + count] if type(r) is Compacted]
    return parts


def absorb_head(sup: Supervision, jobs: Any, records: Sequence[Record]) -> int:
    """Make `sup` (a new fold, from records[0]) the checkpoint at the journal's head when
    there is one; returns the index of the first record to fold after it (0: none).
    ValueError for a head that is not a whole checkpoint of this journal."""
    parts = head_parts(records)
    if not parts:
        return 0
    ckpt = joined(parts)
    if jobs is not None:
        for added in ckpt.added:  # the parameter space grows before the table does
            jobs.space.add(added.params)
    head = records[0]
    restore(sup, ckpt, head if isinstance(head, Opened) else None)  # version 3 names it
    sup.compacted, sup.compacted_at = ckpt.records, ckpt.at
    return 1 + len(parts)


def options(opened: Opened | None) -> Journal:
    """The spec's `journal:` settings (defaults for journals written before they existed)."""
    raw = (opened.spec.get("journal") if opened is not None else None) or {}
    try:
        return msgspec.convert(raw, Journal)
    except msgspec.ValidationError:
        return Journal()


def _head(path: str) -> tuple[int, int]:
    """The bytes and frames at the head of the journal at `path` that are not history: its
    Opened record and the checkpoint parts after it (read frame by frame, nothing more)."""
    frames, end = 0, HEADER_SIZE
    try:
        with open(path, "rb") as f:
            want = 2  # Opened, and the parts the first one after it announces
            while frames < want:
                f.seek(end)
                length = FRAME_HEAD.unpack(f.read(FRAME_OVERHEAD))[0]
                payload = f.read(length)
                if frames == 1:
                    rec = decode(payload)
                    if not isinstance(rec, Compacted):
                        break
                    want = 1 + rec.parts
                frames, end = frames + 1, end + FRAME_OVERHEAD + length
    except Exception:  # too short, or anything else: what was read is the head
        pass
    return end, max(frames, 1)


class Compactor:
    """The supervisor's side: compact the journal when it passes its threshold."""

    def __init__(
        self,
        layout: Layout,
        writer: JournalWriter,
        hook: Callable[[str], None],
        *,
        part: int = PART,
        ledger_at: int = ledger.LEDGER_AT,
    ) -> None:
        self.layout = layout
        self.ledger_at = ledger_at
        self._ledger_floor = ledger_at  # rewrite the ledger once it is this big
        self._ledger_seen = writer.frames  # the journal's records when we last looked at it
        self.part = part
        self.writer = writer
        self.hook = hook
        self._options: Journal | None = None
        size, self._head = _head(str(layout.journal))
        self._floor = (size, self._head)  # the journal right after the last compaction
        self.count = 0  # compactions by this supervisor

    def due(self, sup: Supervision) -> bool:
        w = self.writer
        if w.pending or w.closed:
            return False
        if self._options is None:
            self._options = options(sup.opened)
        size, frames = self._floor
        # past the threshold, and at least twice the size right after the last compaction (a
        # checkpoint as large as the threshold would otherwise be compacted every turn)
        by_size = w.size >= self._options.compact_at and w.size >= 2 * size
        by_count = w.frames >= self._options.compact_records and w.frames >= 2 * frames
        return by_size or by_count

    def maybe(self, sup: Supervision, now: float) -> bool:
        """Compact if due (and rewrite the ledger); True if it did. Else the ledger alone, if due."""
        if not self.due(sup):
            if self._ledger_due():
                self.rewrite_ledger(sup)
            return False
        self.compact(sup, now)
        self.rewrite_ledger(sup)
        return True

    def _ledger_due(self) -> bool:
        w = self.writer
        if w.pending or w.closed or w.frames - self._ledger_seen < LEDGER_EVERY:
            return False
        self._ledger_seen = w.frames
        try:
            return os.stat(self.layout.reaper_log).st_size >= self._ledger_floor
        except OSError:
            return False

    def rewrite_ledger(self, sup: Supervision) -> None:
        """Keep only the ledger lines of runs the journal believes live (between two turns:
        what `sup` folded is committed). A failure leaves a ledger recovery can use."""
        path = str(self.layout.reaper_log)
        try:
            size = ledger.rewrite(path, ledger.live_runs(sup), self.hook)
        except OSError as exc:
            log.warning("cannot rewrite the reapers' ledger: %s", exc)
            with contextlib.suppress(OSError):
                self._ledger_floor = max(self.ledger_at, 2 * os.stat(path).st_size)
            return
        self._ledger_floor = max(self.ledger_at, 2 * (size or 0))
        self._ledger_seen = self.writer.frames

    def compact(self, sup: Supervision, now: float) -> None:
        assert sup.opened is not None
        if self._options is None:
            self._options = options(sup.opened)
        records = sup.compacted + max(0, self.writer.frames - self._head)
        before = sup.compacted, sup.compacted_at
        sup.compacted, sup.compacted_at = records, now  # as a reader of the new file folds it
        try:
            parts = split(capture(sup, records, now), self.part)
        finally:
            sup.compacted, sup.compacted_at = before  # until the new file is in place
        payloads = [encode(sup.opened), *(encode(p) for p in parts)]
        keep_as = self._segment(records) if self._options.keep_history else None
        checkpoints.invalidate(self.layout)  # its offsets are of the old file
        try:
            journal_compact.replace(self.layout.journal, payloads, keep_as=keep_as, hook=self.hook)
        finally:
            if os.stat(self.layout.journal).st_ino != self.writer.inode:  # renamed, then failed
                self.writer.reopen(len(payloads))
                sup.compacted, sup.compacted_at = records, now
                self._head = len(payloads)
                self._floor = (self.writer.size, self.writer.frames)
                self.count += 1

    def postpone(self) -> None:
        """A compaction failed (full disk): the next try waits until the journal doubled."""
        self._floor = (self.writer.size, self.writer.frames)

    def _segment(self, records: int) -> str:
        where = self.layout.dir / HISTORY
        safefs.make_subdir(where, self.layout.dir)
        current = os.stat(self.layout.journal).st_ino
        for name in segments(self.layout):  # a link a compaction that died made of this file
            if os.stat(name).st_ino == current:
                os.unlink(name)
        return str(where / f"journal.{records:012d}")


def segments(layout: Layout) -> list[str]:
    """The old journals `journal.keep_history` kept, oldest first."""
    try:
        names = os.listdir(layout.dir / HISTORY)
    except OSError:
        return []
    return [str(layout.dir / HISTORY / n) for n in sorted(names) if n.startswith("journal.")]
