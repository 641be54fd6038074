"""The fold of a journal kept current for readers that wait (`wait`, `kill`, `lose`, `tail -f`).

It reads only what was appended since its last look (the Tail knows its byte offset) and
sleeps until the journal or its lock changes (inotify, else a short poll). A supervisor that
dies leaves no record, but the kernel closes its journal and lock files, which wakes us.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from corral.core.records import JournalKind, Opened
from corral.core.supervision import Supervision
from corral.journal.frame import FRAME_OVERHEAD
from corral.journal.watch import FileWatch, Tail
from corral.supervisor.layout import Layout

# seconds a waiting reader sleeps at most between two looks: a supervisor's death is seen by
# the lock, not in the journal, and a kernel without inotify (or a dropped event) is a bound
# away from being noticed
WAKE_BOUND = 1.0


class Follower:
    def __init__(self, layout: Layout, keep_finished: bool | None = None) -> None:
        self.layout = layout
        self.keep_finished = keep_finished
        self.tail = Tail(layout.journal)
        self.watch = FileWatch(layout.dir, ("journal", "journal.lock"))
        self._sup: Supervision | None = None
        self._jobs: Any = None  # session.Jobs of an ensemble: grows with submitted params

    def refresh(self) -> Supervision:
        """The fold as of every record committed so far. An impossible record is one line
        with its offset (RecordRejected, as in replaying.py)."""
        from corral.supervisor.checkpoints import fold_onto, start
        from corral.supervisor.folding import supervision_for
        from corral.supervisor.replaying import decode_all
        from corral.supervisor.session import SessionError

        if self._sup is None and self.tail.offset == 0:
            started = start(self.layout, self.keep_finished)  # skip what a checkpoint holds
            if started is not None:
                self.tail.close()
                self._sup, self._jobs, self.tail = started
        payloads = self.tail.read_new()
        if self.tail.restarted:
            self._sup = None  # a new file (compacted): fold it from its start
        if payloads and self._sup is None:
            first = decode_all(self.layout, payloads[:1], None)[0]  # a bad one: RecordRejected
            if not isinstance(first, Opened):
                raise SessionError(f"{self.layout.journal}: no Opened record; not a corral journal")
            keep = first.kind == JournalKind.TASK if self.keep_finished is None else self.keep_finished
            self._sup, self._jobs = supervision_for(first, self.layout, keep)
        if payloads:
            assert self._sup is not None
            # where this batch starts, for the offset of a bad record (a Tail started at a
            # checkpoint reports offset 0 until its first read)
            first_at = self.tail.offset - sum(FRAME_OVERHEAD + len(p) for p in payloads)
            fold_onto(self.layout, self._sup, self._jobs, payloads, first_at)
        if self._sup is None:
            raise SessionError(f"{self.layout.journal}: no Opened record; not a corral journal")
        return self._sup

    def wait(self, timeout: float) -> bool:
        """Sleep until the journal or its lock changes, or `timeout` seconds pass."""
        return self.watch.wait(timeout)

    def close(self) -> None:
        self.tail.close()
        self.watch.close()

    def __enter__(self) -> Follower:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
