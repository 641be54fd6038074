"""The journal's errors: each one prints as a single line a person can act on."""

from __future__ import annotations

import errno
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


class JournalReadOnly(JournalError):
    """A journal in an older format that this version reads but never appends to or repairs."""

    def __init__(self, path: str | os.PathLike[str], version: int) -> None:
        self.path = os.fspath(path)
        self.version = version
        super().__init__(self.path, version)

    def __str__(self) -> str:
        return (
            f"{self.path}: journal format {self.version} (an older corral) is read-only here: "
            "it cannot tell damage from a torn tail; finish it with the corral that started it"
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


class JournalUnreadable(JournalError):
    """The journal path exists but cannot be opened as a journal file (one line, no traceback)."""

    def __init__(self, path: str | os.PathLike[str], cause: OSError) -> None:
        self.path = os.fspath(path)
        self.cause = cause
        super().__init__(self.path, cause.errno)

    def __str__(self) -> str:
        if self.cause.errno == errno.ELOOP:
            why = "it is a symbolic link, and journals are never opened through one"
        else:
            why = self.cause.strerror or type(self.cause).__name__
        return f"{self.path}: cannot open the journal: {why}"


def open_journal_fd(path: str | os.PathLike[str], flags: int, mode: int = 0o600) -> int:
    """os.open without following a symlink; any failure but a missing file is JournalUnreadable.

    FileNotFoundError passes through: callers decide what a missing journal means. Opened
    non-blocking (then made blocking again): a FIFO planted in its place is refused at once
    instead of hanging every reader (`status` of the whole root) until someone writes to it.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise JournalUnreadable(path, exc) from None
    try:
        if not _is_regular(fd):
            raise JournalUnreadable(path, OSError(errno.EISDIR, "it is not a regular file"))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _is_regular(fd: int) -> bool:
    import stat

    return stat.S_ISREG(os.fstat(fd).st_mode)


class RecordRejected(JournalError):
    """A record that checks out as bytes but cannot be replayed: the state it leads to is
    impossible (a fold error, a record the decoder refuses, a job that does not exist).

    Like corruption, it is reported and never skipped: the journal is left as it is.
    """

    def __init__(self, path: str | os.PathLike[str], subject: str, offset: int, cause: str) -> None:
        self.path = os.fspath(path)
        self.subject = subject
        self.offset = offset
        self.cause = cause
        super().__init__(self.path, subject, offset, cause)

    def __str__(self) -> str:
        return (
            f"{self.subject}: journal record at byte {self.offset} cannot be replayed ({self.cause}); "
            f"nothing was changed, 'corral read --raw' shows the records ({self.path})"
        )
