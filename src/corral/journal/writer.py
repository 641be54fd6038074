"""The single writer of a journal: lock, recover the tail, append with group commit.

Durability contract: a record is durable once `commit()` returns. `append()` only buffers
(no syscall), so the supervisor batches every record of one loop iteration and pays for one
write and one fdatasync. A failed commit leaves the writer unusable: after a failed fsync the
page cache can no longer be trusted (PostgreSQL's "fsyncgate"), so the caller reopens, which
rescans and repairs the file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

from .compact import fsync_parent, remove_leftover
from .errors import (
    JournalCorrupt,
    JournalError,
    JournalLocked,
    JournalReadOnly,
    JournalUnreadable,
    open_journal_fd,
)
from .frame import (
    HEADER,
    HEADER_SIZE,
    LEGACY_VERSION,
    ScanResult,
    Stop,
    encode_frame,
    header_problem,
    header_version,
    scan,
    scan_journal,
)


@dataclass(frozen=True, slots=True)
class RepairInfo:
    """A torn tail that opening the journal truncated away; the caller logs a warning."""

    offset: int  # the file now ends here
    dropped: int  # bytes removed
    reason: str


def lock_path(path: str | os.PathLike[str]) -> str:
    # A sibling file, not the journal itself, so readers never contend with the writer.
    return os.fspath(path) + ".lock"


def lock_holder(path: str | os.PathLike[str]) -> int | None:
    """The pid recorded by the journal's current writer, without taking the lock.

    None if there is no lock file or no pid in it. A writer clears its pid on close, but one
    that was killed leaves it behind, so a pid here is a hint; only a failed lock is proof.
    """
    try:  # non-blocking: a FIFO planted as the lock must not hang `status`
        fd = os.open(lock_path(path), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    try:
        text = os.read(fd, 32) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
    finally:
        os.close(fd)
    try:
        pid = int(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return None
    return pid if pid > 0 else None


def lock_taken(path: str | os.PathLike[str]) -> bool | None:
    """Whether a live writer holds the journal's lock, asked of the kernel (the pid in the file
    may be stale: a killed writer leaves it). False without a lock file; None when the lock is
    not ours to open (another user's task: the lock is 0600 even when the task is shared)."""
    try:
        fd = os.open(lock_path(path), os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return False
    except PermissionError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops our shared lock at once
    return False


def _acquire_lock(path: str) -> int:
    # os.open fds are close-on-exec (PEP 446): a spawned process must not inherit the lock,
    # or it would keep the journal locked after the supervisor dies.
    try:
        # 0600 even in a group-shared task: whoever can open the lock can flock it (shared)
        # and so block the owner's kill and recover
        fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:  # not ours to take (another user's task, a symlink): one line
        raise JournalUnreadable(lock_path(path), exc) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device planted as the lock
            raise JournalUnreadable(lock_path(path), OSError(errno.EINVAL, "it is not a regular file"))
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalLocked(path, lock_holder(path)) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def _release_lock(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)  # a pid left behind would name a writer that is gone
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _scan_from(fd: int, start: int) -> tuple[ScanResult, int] | None:
    """The frames from `start` to the end (and the file size), or None when `start` is not a
    usable frame boundary of a current-format journal (the caller reads everything)."""
    size = os.fstat(fd).st_size
    head = os.pread(fd, HEADER_SIZE, 0)
    if size < start or header_problem(head) is not None or header_version(head) == LEGACY_VERSION:
        return None
    chunk = os.pread(fd, size - start, start)
    result = scan(chunk, 0)
    if result.stop is Stop.CORRUPT or len(chunk) != size - start:
        return None  # corruption is reported by the full scan, with its offset in the file
    return result, size


def _resumed_writer(
    path: str, fd: int, lock_fd: int, start: int, result: ScanResult, size: int
) -> tuple[JournalWriter, list[bytes]]:
    repaired = None
    end = start + result.end
    if result.stop is Stop.TORN:
        os.ftruncate(fd, end)
        os.fsync(fd)
        repaired = RepairInfo(end, size - end, result.reason or "torn tail")
    writer = JournalWriter(path, fd, lock_fd, end, repaired)
    writer.read_from = start
    writer.frames = len(result.payloads)
    return writer, result.payloads


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, max(size - offset, 1 << 16), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


_RETRYABLE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})


class JournalFull(JournalError):
    """The journal cannot be written now (file system full, quota, I/O error); the commit may
    be tried again: nothing of it is in the file."""

    def __init__(self, path: str, cause: OSError) -> None:
        self.path = path
        self.errno = cause.errno
        self.strerror = cause.strerror or str(cause)
        super().__init__(path, self.strerror)

    def __str__(self) -> str:
        return f"{self.path}: cannot write the journal: {self.strerror}"


class JournalWriter:
    """Appends framed records to one journal file; holds its exclusive lock while open."""

    def __init__(self, path: str, fd: int, lock_fd: int, size: int, repaired: RepairInfo | None):
        # Use JournalWriter.open() or open_for_append(); this only assembles the parts.
        self.path = path
        self.read_from = 0  # the payloads open_for_append returned start here (0: the start)
        self.repaired = repaired
        self._fd: int | None = fd
        self._lock_fd = lock_fd
        self._size = size
        self._frames: list[bytes] = []
        self._failed = False
        # False: a commit writes without fdatasync (durable against the writer's death, not the
        # machine's): for a journal whose records are worthless once its machine went down (a
        # pilot worker's ledger: the launcher's journal is the truth)
        self.sync = True
        # frames in the file (after a resume: those after `read_from` unless the caller knows
        # more); a compaction's threshold counts them
        self.frames = 0

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool) -> JournalWriter:
        """Lock, scan and repair the journal at `path`; see `open_for_append`."""
        writer, _payloads = open_for_append(path, create=create)
        return writer

    @property
    def pending(self) -> int:
        """How many appended records are not yet committed."""
        return len(self._frames)

    @property
    def size(self) -> int:
        """Bytes in the file after the last commit (the offset the next frame lands at)."""
        return self._size

    @property
    def inode(self) -> int:
        """The inode of the file being written (a compaction renames another one in)."""
        assert self._fd is not None
        return os.fstat(self._fd).st_ino

    @property
    def closed(self) -> bool:
        return self._fd is None

    def append(self, payload: bytes) -> None:
        """Buffer one record; no syscall. Raises ValueError for an empty or oversize payload."""
        self._check_usable()
        self._frames.append(encode_frame(payload))

    def retract(self) -> None:
        """Take back the last appended record (not committed yet): the caller's fold refused it."""
        self._frames.pop()

    def append_many(self, payloads: Iterable[bytes]) -> None:
        self._check_usable()
        frames = [encode_frame(p) for p in payloads]  # all or nothing on a bad payload
        self._frames.extend(frames)

    def commit(self) -> None:
        """Make every buffered record durable: one write, one fdatasync. No-op if none.

        A full file system (ENOSPC, EDQUOT) or an I/O error (EIO) raises JournalFull and leaves
        the writer usable: the file is cut back to the last durable frame and the records stay
        buffered, so the same commit can be tried again when there is room. Any other failure,
        or a cut that fails, makes the writer refuse to go on."""
        self._check_usable()
        if not self._frames:
            return
        data = b"".join(self._frames)
        fd = self._fd
        assert fd is not None
        self._failed = True  # cleared only if both the write and the sync succeed
        try:
            view = memoryview(data)
            while view:  # regular files write in full barring errors; loop to be certain
                written = os.write(fd, view)
                view = view[written:]
            if self.sync:
                os.fdatasync(fd)
        except OSError as exc:
            # Cut what this commit wrote so the file ends on a frame boundary again; after a
            # failed fdatasync too: nothing past the last durable frame is trusted, and a retry
            # writes it all again.
            try:
                os.ftruncate(fd, self._size)
            except OSError:
                raise exc from None
            if exc.errno in _RETRYABLE:
                self._failed = False
                raise JournalFull(self.path, exc) from exc
            raise
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._size)
            raise
        self._failed = False
        self._size += len(data)
        self.frames += len(self._frames)
        self._frames.clear()

    def reopen(self, frames: int) -> None:
        """Go on writing to the file now at `path` (a compaction renamed a new journal over
        the one this writer had open; it holds `frames` frames). Nothing may be pending."""
        self._check_usable()
        if self._frames:
            raise JournalError(f"{self.path}: records are pending; commit them before replacing the file")
        fd = open_journal_fd(self.path, os.O_RDWR | os.O_APPEND)
        old, self._fd = self._fd, fd
        assert old is not None
        os.close(old)
        self._size = os.fstat(fd).st_size
        self.frames = frames

    def abandon(self) -> None:
        """Drop the buffered records and refuse further commits (giving up on a full disk:
        what they said is redone by recovery from the runs and the reaper's ledger)."""
        self._frames.clear()
        self._failed = True

    def close(self) -> None:
        """Commit what is buffered (unless a commit already failed), then release the lock."""
        if self._fd is None:
            return
        try:
            if not self._failed:
                self.commit()
        finally:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            finally:
                _release_lock(self._lock_fd)

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Committing on an exception is safe under write-ahead: a record states an intent or
        # an observed fact, never an effect that has not been checked.
        self.close()

    def _check_usable(self) -> None:
        if self._fd is None:
            raise JournalError(f"{self.path}: journal writer is closed")
        if self._failed:
            raise JournalError(f"{self.path}: an earlier commit failed; reopen the journal to recover")


def open_for_append(
    path: str | os.PathLike[str], *, create: bool, resume_at: int = 0, mode: int = 0o600
) -> tuple[JournalWriter, list[bytes]]:
    """Lock the journal, read it once, repair a torn tail, and return the writer and payloads.

    `resume_at` (a frame boundary a checkpoint covers up to) reads and returns only the
    payloads after it: the prefix was checked when the checkpoint's records were committed.
    If the bytes there do not scan as frames, the whole journal is read as usual.

    `create=True` creates the journal if it is missing (and opens it if it exists); with
    `create=False` a missing journal raises FileNotFoundError. Corruption in the middle raises
    JournalCorrupt and leaves the file unchanged, and so does a format-1 journal (which cannot
    tell damage from a torn tail) with JournalReadOnly. Another writer raises JournalLocked.
    """
    path = os.fspath(path)
    if not create and not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such journal")
    lock_fd = _acquire_lock(path)
    fd = -1
    try:
        remove_leftover(path)  # a compaction died before its rename: the journal is whole
        flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0)
        fd = open_journal_fd(path, flags, mode)  # mode: 0600, or 0640 in a shared task
        resumed = _scan_from(fd, resume_at) if resume_at > HEADER_SIZE else None
        if resumed is not None:
            return _resumed_writer(path, fd, lock_fd, resume_at, *resumed)
        buf = _read_all(fd)
        result = scan_journal(buf)
        if result.stop is Stop.CORRUPT:
            assert result.error_offset is not None and result.reason is not None
            raise JournalCorrupt(path, result.error_offset, result.reason)
        if result.version == LEGACY_VERSION:
            raise JournalReadOnly(path, result.version)
        repaired = None
        if result.stop is Stop.TORN:
            os.ftruncate(fd, result.end)
            os.fsync(fd)
            repaired = RepairInfo(result.end, len(buf) - result.end, result.reason or "torn tail")
        size = result.end
        if size == 0:
            os.write(fd, HEADER)
            os.fsync(fd)
            fsync_parent(path)
            size = len(HEADER)
        writer = JournalWriter(path, fd, lock_fd, size, repaired)
        writer.frames = len(result.payloads)
        return writer, result.payloads
    except BaseException:
        if fd >= 0:
            os.close(fd)
        _release_lock(lock_fd)
        raise
