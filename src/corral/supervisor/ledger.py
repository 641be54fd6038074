"""Keeping the reapers' ledger (ROOT/ID/reaper.log, see reaper.py) bounded.

A process restarted forever adds two ledger lines per run; recovery needs only the lines of
runs the journal believes live (no end recorded) and of reapers still alive (it waits for
their X line). `rewrite` keeps those and drops the rest, when the journal compacts
(compaction.py) or when the ledger passed its own threshold, between two turns of the
supervisor (nothing recorded is pending, so the journal's view is the durable one).

Writers and the rewrite agree through flock on the ledger file: a reaper (and the Spawner's
R line) appends under a shared lock and, once it holds it, checks that its file is still the
ledger (st_nlink > 0); if the rewrite renamed another over it, the writer opens the new one.
The rewrite holds the exclusive lock from its read to its rename, so no line is written
between them into a file about to be replaced. Crash-safe like a journal's compaction: the
new file (`reaper.log.compact`) is written and fsynced whole, renamed, then the directory is
synced; a crash before the rename leaves the old ledger and a leftover the next rewrite
removes, a crash after it a whole new ledger.

Lines that are not a reaper's (garbage, or longer than MAX_LINE) are dropped; a torn last line
(a full disk cut a reaper's write; it appends the rest later) is carried over as it is.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator, Set

from corral.core.supervision import Supervision
from corral.journal.compact import fsync_parent
from corral.supervisor import proc

RunKey = tuple[int, str, int]
SUFFIX = ".compact"
LEDGER_AT = 1 << 20  # rewrite the ledger past 1 MiB (and twice its size after the last rewrite)
LOCK_WAIT = 2.0  # seconds a rewrite waits for the writers' lock before giving up (till next time)
MAX_LINE = 1 << 16  # longer lines are none a reaper writes (its reasons are short)
_CHUNK = 1 << 20


def _lines(fd: int) -> Iterator[bytes]:
    """The file's lines (with their newline), then its unterminated tail if any; lines longer
    than MAX_LINE are skipped, read in chunks (a huge line is never held whole)."""
    buf, skipping = b"", False
    while chunk := os.read(fd, _CHUNK):
        buf += chunk
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            if not skipping and end + 1 - start <= MAX_LINE:
                yield buf[start : end + 1]
            skipping, start = False, end + 1
        buf = buf[start:]
        if len(buf) > MAX_LINE:
            buf, skipping = b"", True
    if buf and not skipping:
        yield buf


def _keep(line: bytes, wanted: Set[RunKey], alive: dict[int, bool]) -> bool:
    """A whole line recovery may still need: a live run's, or an alive reaper's R/X line."""
    fields = line.rstrip(b"\n").split(b"\t")
    try:
        kind = fields[0]
        if kind == b"R":
            pid = int(fields[1])
            alive[pid] = proc.alive(pid, int(fields[2]))
            return alive[pid]
        if kind == b"X":
            return alive.get(int(fields[1]), False)
        if kind in (b"S", b"E", b"F") and len(fields) >= 6:
            return (int(fields[1]), fields[2].decode(), int(fields[3])) in wanted
    except (IndexError, ValueError):
        pass
    return False


def _lock(fd: int, wait: float = LOCK_WAIT) -> None:
    """The exclusive lock, which reapers hold (shared) only while they write a batch; a reaper
    stopped in the middle of one must not hang the supervisor: OSError after `wait` s."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise OSError(errno.EWOULDBLOCK, "a reaper holds the ledger's lock") from None
            time.sleep(0.001)


def _write_new(tmp: str, mode: int, chunks: Iterator[bytes], hook: Callable[[str], None]) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a rewrite that died before its rename
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        hook("ledger-write")  # the new file is incomplete
        for data in chunks:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.close(fd)


def rewrite(path: str, wanted: Set[RunKey], hook: Callable[[str], None] = lambda _p: None) -> int | None:
    """Replace the ledger at `path` by the lines recovery still needs (`wanted`: the runs the
    journal believes live). Returns its new size (None: no ledger). OSError: the ledger is
    unchanged (or already the new one, when only the directory sync failed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    try:
        _lock(fd)  # no reaper writes to it from now until the rename
        mode = os.fstat(fd).st_mode & 0o777
        alive: dict[int, bool] = {}
        kept: list[bytes] = []
        for line in _lines(fd):
            if not line.endswith(b"\n") or _keep(line, wanted, alive):
                kept.append(line)
        tmp = path + SUFFIX
        _write_new(tmp, mode, iter(kept), hook)
        hook("ledger-synced")  # the new ledger is whole and durable, the old one in place
        os.replace(tmp, path)
        hook("ledger-renamed")
        fsync_parent(path)
        return sum(map(len, kept))
    finally:
        os.close(fd)  # releases the lock: waiting writers find their file unlinked


def append(path: str, data: bytes, opener: Callable[[str], int]) -> None:
    """Append `data` to the ledger under its shared lock (the supervisor's R line), to the
    file the path names once the lock is held (a rewrite may have replaced it meanwhile)."""
    fd = opener(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        while os.fstat(fd).st_nlink == 0:
            os.close(fd)
            fd = opener(path)
            fcntl.flock(fd, fcntl.LOCK_SH)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def live_runs(sup: Supervision) -> set[RunKey]:
    """The runs the journal (folded into `sup`) believes live: their lines are kept."""
    return {(job, run.process, run.run) for job in sup.live for run in sup.jobs[job].live_runs()}
