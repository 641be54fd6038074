"""Readers that wait: read a journal from where they stopped, and sleep until it changes.

`Tail` keeps a byte offset and returns only the payloads committed since its last read (a
million-record journal is read once, not once per poll). `FileWatch` sleeps until a file in a
directory changes: inotify through ctypes where the kernel has it (no third-party module, no
wake-ups while nothing happens), else a poll of the files' sizes and inodes every `interval`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import time
from collections.abc import Iterable

from .errors import JournalCorrupt, JournalError, open_journal_fd
from .frame import (
    FORMAT_VERSION,
    HEADER_SIZE,
    LEGACY_VERSION,
    Stop,
    header_problem,
    header_version,
    scan,
    scan_journal,
)
from .legacy import scan_v1

# <sys/inotify.h>
IN_MODIFY = 0x002
IN_CLOSE_WRITE = 0x008  # also sent when a writer is killed: the kernel closes its files
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_MASK = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name

DEFAULT_POLL = 0.2  # seconds between two looks when inotify is not available


class Tail:
    """The payloads of a journal, read incrementally from the last whole frame seen.

    `read_new()` returns what was committed since the previous call. A journal replaced by
    another file (a compaction renames a new one over it) is finished on the old file first,
    then reopened from its start: `restarted` tells the caller to fold afresh.
    """

    def __init__(self, path: str | os.PathLike[str], *, offset: int = 0, inode: int | None = None) -> None:
        """`offset`: a frame boundary to start from (a checkpoint's), instead of the start, in
        the file of inode `inode` when given: another file there (compacted meanwhile) is read
        from its start, and `restarted` says so after the first read."""
        self.path = os.fspath(path)
        self._fd: int | None = None
        self._ino = 0
        self._start = offset
        self._expect = inode
        self._other_file = False
        self.offset = 0  # just past the last whole frame returned (0: header not read yet)
        self.version = FORMAT_VERSION  # the file's format, known once its header is read
        self.restarted = False

    def read_new(self) -> list[bytes]:
        """New payloads; [] when nothing was committed. FileNotFoundError if there is no journal."""
        self.restarted = False
        if self._fd is None:
            self._open()
            self.restarted, self._other_file = self._other_file, False
        payloads = self._read_fd()
        if self._replaced():
            # everything the old file holds was read above; the new file starts over
            self.close()
            self._open()
            self.restarted = True
            payloads = self._read_fd()
        return payloads

    def _open(self) -> None:
        fd = open_journal_fd(self.path, os.O_RDONLY)
        self._fd, self._ino, self.offset = fd, os.fstat(fd).st_ino, 0
        start, self._start = self._start, 0
        expect, self._expect = self._expect, None
        if expect is not None and expect != self._ino:
            start, self._other_file = 0, True  # the offset was of the file this one replaced
        if start >= HEADER_SIZE:
            head = os.pread(fd, HEADER_SIZE, 0)
            problem = header_problem(head)
            if problem is not None:
                raise JournalCorrupt(self.path, 0, problem)
            self.version, self.offset = header_version(head), start

    def _replaced(self) -> bool:
        try:
            return os.stat(self.path).st_ino != self._ino
        except FileNotFoundError:
            return False  # mid-replace or removed: keep the file we have

    def _read_fd(self) -> list[bytes]:
        fd = self._fd
        assert fd is not None
        size = os.fstat(fd).st_size
        if size < self.offset:
            raise JournalError(f"{self.path}: journal shrank while being followed")
        if size == self.offset:
            return []
        chunk = os.pread(fd, size - self.offset, self.offset)
        if self.offset == 0:
            result = scan_journal(chunk)
            self.version = result.version
        elif self.version == LEGACY_VERSION:
            result = scan_v1(chunk, 0)
        else:
            result = scan(chunk, 0)
        if result.stop is Stop.CORRUPT:
            assert result.error_offset is not None and result.reason is not None
            raise JournalCorrupt(self.path, self.offset + result.error_offset, result.reason)
        # a torn tail is a frame still being written: read it again next time, from its start
        self.offset += result.end
        return result.payloads

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        return None
    return libc


class FileWatch:
    """Sleeps until one of `names` in `directory` is written, closed after writing, created,
    renamed over or deleted. Spurious wake-ups are allowed; missed changes are not."""

    def __init__(
        self, directory: str | os.PathLike[str], names: Iterable[str], *, poll: float = DEFAULT_POLL
    ):
        self.directory = os.fspath(directory)
        self.names = frozenset(names)
        self.poll = poll
        self._fd = -1
        self._seen: dict[str, tuple[int, int, int]] = {}
        libc = _libc() if os.environ.get("CORRAL_NO_INOTIFY") is None else None
        if libc is not None:
            fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
            if fd >= 0 and libc.inotify_add_watch(fd, os.fsencode(self.directory), _MASK) >= 0:
                self._fd = fd
            elif fd >= 0:
                os.close(fd)  # e.g. the per-user watch limit is reached: fall back to polling
        if self._fd < 0:
            self._seen = self._look()

    @property
    def inotify(self) -> bool:
        return self._fd >= 0

    def wait(self, timeout: float) -> bool:
        """Block until a change or `timeout` seconds; True if something (probably) changed."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            left = deadline - time.monotonic()
            if self._fd >= 0:
                if self._wait_inotify(left):
                    return True
            else:
                time.sleep(max(0.0, min(self.poll, left)))
                now = self._look()
                changed, self._seen = now != self._seen, now
                if changed:
                    return True
            if time.monotonic() >= deadline:
                return False

    def _wait_inotify(self, left: float) -> bool:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        if not poller.poll(max(0, int(left * 1000))):
            return False
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return False
        pos = 0
        hit = False
        while pos + _EVENT.size <= len(data):
            _wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
            name = data[pos + _EVENT.size : pos + _EVENT.size + length].rstrip(b"\0").decode(errors="replace")
            pos += _EVENT.size + length
            if mask & (IN_Q_OVERFLOW | IN_DELETE_SELF | IN_MOVE_SELF) or name in self.names:
                hit = True
        return hit

    def _look(self) -> dict[str, tuple[int, int, int]]:
        seen = {}
        for name in self.names:
            try:
                st = os.stat(os.path.join(self.directory, name))
            except OSError:
                continue
            seen[name] = (st.st_ino, st.st_size, st.st_mtime_ns)
        return seen

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
