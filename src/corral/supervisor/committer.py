"""Committing the journal when the disk may be full: retry with backoff, say so once, give up
only after a while, and never carry out an effect whose record is not durable.

While the journal cannot be written (ENOSPC, EDQUOT, EIO) nothing new is launched or
signalled: those are effects of records that are not durable yet. Runs keep running, and their
ends are folded and buffered. When a commit goes through, everything buffered is durable in one
write and the effects are carried out, late.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from corral.errors import UserError
from corral.journal.writer import JournalFull, JournalWriter
from corral.supervisor.crash import CrashPoints

FIRST_DELAY = 0.1  # seconds before the first retry; doubled each time
MAX_DELAY = 5.0
PATIENCE = 600.0  # seconds without a successful commit before the supervisor gives up


class JournalGaveUp(UserError):
    """The journal stayed unwritable for PATIENCE seconds: the supervisor exits, its runs
    live on, and `corral recover` finishes the work once there is room."""


class Committer:
    def __init__(
        self,
        writer: JournalWriter,
        crash: CrashPoints,
        task_id: str,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.writer = writer
        self.crash = crash
        self.task_id = task_id
        self.say = say or _to_stderr
        self.patience = float(os.environ.get("CORRAL_JOURNAL_PATIENCE") or PATIENCE)
        self.problem: str | None = None  # why the journal cannot be written now
        self.since: float | None = None  # wall clock, for people
        self._first: float = 0.0  # monotonic
        self._retry_at: float = 0.0
        self._delay = FIRST_DELAY

    @property
    def stalled(self) -> bool:
        return self.problem is not None

    def commit(self, *, crash_point: bool = True) -> bool:
        """Try to make the buffered records durable; False while the journal cannot be
        written (retried no sooner than the backoff allows). Raises JournalGaveUp."""
        now = time.monotonic()
        if self.problem is not None and now < self._retry_at:
            return False
        if crash_point:
            self.crash.hit("commit")
        try:
            self.writer.commit()
        except JournalFull as exc:
            self._failed(exc, now)
            return False
        if self.problem is not None:
            self.say(f"corral: {self.task_id}: the journal is writable again; carrying on")
            self.problem = self.since = None
            self._delay = FIRST_DELAY
        return True

    def _failed(self, exc: JournalFull, now: float) -> None:
        if self.problem is None:
            self.problem = exc.strerror
            self.since = time.time()
            self._first = now
            self.say(
                f"corral: {self.task_id}: cannot write the journal ({exc.strerror}): launching "
                "nothing new, runs keep running, retrying"
            )
        elif now - self._first >= self.patience:
            self.writer.abandon()
            raise JournalGaveUp(
                f"{self.task_id}: the journal stayed unwritable for {now - self._first:.0f} s "
                f"({exc.strerror}); its runs live on: free space, then 'corral recover {self.task_id}'"
            ) from None
        self._retry_at = now + self._delay
        self._delay = min(MAX_DELAY, self._delay * 2)

    def retry_in(self) -> float | None:
        """Seconds until the next retry (None: not stalled)."""
        if self.problem is None:
            return None
        return max(0.0, self._retry_at - time.monotonic())


def _to_stderr(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except OSError:  # the console may be on the full disk too (a detached supervisor's log)
        pass
