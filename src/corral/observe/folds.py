"""Journals folded once and kept up to date by reading only what was appended since.

A fold is keyed by the journal's inode: a journal replaced (compaction) or shrunk (a torn tail
repaired by a new supervisor) is folded again from the start; one that grew is read from where
the last fold stopped. A 10,000-job ensemble polled by twenty clients costs a few new frames
per poll, not a replay.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from corral.core.batchfold import FoldFailed, fold_batch
from corral.core.records import Compacted, JobsAdded, JournalKind, Opened, Record, decode
from corral.core.supervision import Supervision
from corral.journal import JournalCorrupt, Stop, scan, scan_journal
from corral.supervisor.compaction import absorb_head
from corral.supervisor.folding import Jobs, added_to, supervision_for
from corral.supervisor.layout import Layout
from corral.supervisor.session import SessionError

MAX_READ = 64 * 1024 * 1024  # bytes read per update; a larger backlog is read over several


@dataclass
class RunCounts:
    """Runs launched, failed and lost over a journal's whole history (the fold counts them,
    and a compaction's checkpoint carries them: the counters never go down)."""

    started: int = 0
    failed: int = 0
    lost: int = 0


@dataclass
class Fold:
    layout: Layout
    sup: Supervision
    jobs: Jobs | None
    inode: int
    consumed: int  # journal offset just past the last frame applied
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def runs(self) -> RunCounts:
        return RunCounts(*self.sup.run_totals)

    def apply_from(self, fd: int, size: int) -> None:
        """Apply the whole frames between `consumed` and `size` (a torn tail waits)."""
        while self.consumed < size:
            chunk = os.pread(fd, min(size - self.consumed, MAX_READ), self.consumed)
            if not chunk:
                return
            result = scan(chunk, 0)
            if result.stop is Stop.CORRUPT:
                raise JournalCorrupt(
                    self.layout.journal,
                    self.consumed + (result.error_offset or 0),
                    result.reason or "corrupt",
                )
            for payload in result.payloads:
                self._apply(payload)
            if result.end == 0:
                return  # a frame still being written (or larger than MAX_READ: not possible)
            self.consumed += result.end

    def _apply(self, payload: bytes) -> None:
        rec = decode(payload)
        # as session.replay does: added jobs extend the parameter space before the fold sees them
        if isinstance(rec, JobsAdded) and self.jobs is not None:
            self.jobs.space.add(rec.params)
        self.sup.apply(rec)


def open_journal(layout: Layout) -> int:
    """The journal's fd, refusing a symlink in place of the task directory or the journal."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    dir_fd = os.open(layout.dir, flags | os.O_DIRECTORY)
    try:
        return os.open("journal", flags, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def _head(payloads: list[bytes]) -> list[Record]:
    """The Opened record and the checkpoint parts after it (decoded once more by the fold
    when they are not parts: only the first two)."""
    head = [decode(p) for p in payloads[:2]]
    if len(head) == 2 and isinstance(head[1], Compacted):
        head += [decode(p) for p in payloads[2 : 1 + head[1].parts]]
    return head


def _new_fold(layout: Layout, fd: int, inode: int, size: int) -> Fold:
    buf = os.pread(fd, min(size, MAX_READ), 0)
    result = scan_journal(buf)
    if result.stop is Stop.CORRUPT:
        raise JournalCorrupt(layout.journal, result.error_offset or 0, result.reason or "corrupt")
    if not result.payloads:
        raise SessionError(f"{layout.journal}: no records yet")
    opened = decode(result.payloads[0])
    if not isinstance(opened, Opened):
        raise SessionError(f"{layout.journal}: no Opened record; not a corral journal")
    sup, jobs = supervision_for(opened, layout, keep_finished=opened.kind == JournalKind.TASK)
    fold = Fold(layout, sup, jobs, inode, 0)
    try:  # a compacted journal starts with a checkpoint: restored, not replayed
        start = absorb_head(sup, jobs, _head(result.payloads))
    except ValueError as exc:
        raise SessionError(f"{layout.journal}: its head checkpoint cannot be read: {exc}") from None
    payloads = result.payloads[start:] if start else result.payloads
    try:  # decoded one by one as the fold goes: the first bad record raises, as in _apply
        fold_batch(sup, map(decode, payloads), added_to(jobs))
    except FoldFailed as failed:
        assert isinstance(failed.__cause__, Exception)
        raise failed.__cause__ from None
    fold.consumed = result.end
    fold.apply_from(fd, size)
    return fold


class Folds:
    """Up-to-date folds of the journals under a root, the most recently used `capacity` kept."""

    def __init__(self, root: os.PathLike[str] | str, capacity: int = 64) -> None:
        from pathlib import Path

        self.root = Path(root)
        self.capacity = capacity
        self._folds: OrderedDict[str, Fold] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, task_id: str) -> Fold:
        """The fold of task_id as of now. Raises OSError (no such task, a symlink),
        JournalCorrupt or SessionError (not a journal)."""
        layout = Layout(self.root, task_id)
        fd = open_journal(layout)
        try:
            st = os.fstat(fd)
            with self._lock:
                fold = self._folds.get(task_id)
                if fold is not None:
                    self._folds.move_to_end(task_id)
            if fold is not None and fold.inode == st.st_ino and fold.consumed <= st.st_size:
                with fold.lock:
                    fold.apply_from(fd, st.st_size)
                return fold
            fold = _new_fold(layout, fd, st.st_ino, st.st_size)
            with self._lock:
                self._folds[task_id] = fold
                while len(self._folds) > self.capacity:
                    self._folds.popitem(last=False)
            return fold
        finally:
            os.close(fd)
