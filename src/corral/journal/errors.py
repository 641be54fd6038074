"""The journal's errors: each one prints as a single line a person can act on."""

from __future__ import annotations

import os


class JournalError(Exception):
    """Base of every error the journal layer raises on purpose."""


class JournalCorrupt(JournalError):
    """A record in the middle of the journal (or its header) fails its checks.

    Nothing is repaired or skipped: the records before ``offset`` are intact, and the file is
    left exactly as it was so that ``corral read --raw`` can show what is there.
    """

    def __init__(self, path: str | os.PathLike[str], offset: int, reason: str) -> None:
        self.path = os.fspath(path)
        self.offset = offset
        self.reason = reason
        super().__init__(self.path, offset, reason)

    def __str__(self) -> str:
        what = "header" if self.offset == 0 else "record"
        return (
            f"{self.path}: corrupt {what} at byte {self.offset} ({self.reason}); "
            "run 'corral read --raw' to inspect, the records before it are intact"
        )


class JournalLocked(JournalError):
    """Another writer holds the journal's lock (one writer per journal)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        holder_pid: int | None,
        *,
        subject: str | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.holder_pid = holder_pid
        # The caller knows what the journal belongs to ("task web"); we only know the file.
        self.subject = subject if subject is not None else f"journal {self.path}"
        super().__init__(self.path, holder_pid)

    def __str__(self) -> str:
        holder = f"pid {self.holder_pid}" if self.holder_pid is not None else "another process"
        return (
            f"{self.subject} is supervised by {holder} (lock on {self.path}.lock); "
            "use 'corral recover --force' to take over"
        )
