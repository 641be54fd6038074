"""`logger: {destination: both}`: a run's output in its log files and on the supervisor's console.

The run writes to its files exactly as with `file` (no pipe through the supervisor, so it
outlives the supervisor and never waits for a slow terminal); the supervisor follows those
files and copies complete lines to its own stdout (the run's stdout) and stderr (its stderr),
each prefixed with `process[run] | ` (ensembles: `job.process[run] | `). The console is a
best-effort copy, never in the run's way and never the supervisor's:

- writes go out only when poll says the stream can take them, in pieces of at most PIPE_BUF
  bytes (a pipe then never blocks); what cannot go out waits in a buffer of at most
  MAX_PENDING bytes, beyond which lines are dropped and a `[corral: N bytes dropped]` line says so;
- a console that is gone (EPIPE, EIO, the terminal hung up) ends the copying for good;
- the files are followed every INTERVAL seconds while some run mirrors (a file truncated by
  rotation is followed from its new start); a run's last lines are copied when it ends.
"""

from __future__ import annotations

import contextlib
import os
import select
from dataclasses import dataclass, field

from corral.supervisor.every import Every

INTERVAL = 0.2
MAX_PENDING = 1 << 20
MAX_LINE = 64 * 1024  # a longer line without a newline goes out in pieces
_PIECE = select.PIPE_BUF


@dataclass
class _Followed:
    path: str
    stream: int  # 1 or 2
    offset: int = 0
    partial: bytes = b""


@dataclass
class _Stream:
    fd: int
    pending: bytearray = field(default_factory=bytearray)
    dropped: int = 0


class Mirror:
    def __init__(self, stdout: int = 1, stderr: int = 2) -> None:
        self.streams = {1: _Stream(stdout), 2: _Stream(stderr)}
        self.followed: dict[object, tuple[bytes, list[_Followed]]] = {}
        self.closed = False  # the console is gone: nothing more is copied
        self.timer = Every(INTERVAL)

    def watch(self, key: object, label: str, stdout: str, stderr: str) -> None:
        if self.closed:
            return
        files = [_Followed(stdout, 1), _Followed(stderr, 2)]
        self.followed[key] = (f"{label} | ".encode(), files)
        self.timer.start()

    def forget(self, key: object) -> None:
        """The run ended: copy its last lines (and a last line without a newline)."""
        found = self.followed.pop(key, None)
        if found is not None and not self.closed:
            prefix, files = found
            for followed in files:
                self._follow(prefix, followed)
                if followed.partial:
                    self._queue(followed.stream, prefix + followed.partial + b"\n")
            self._send()
        if not self.followed and not self.waiting:
            self.timer.stop()

    def hangup(self) -> None:
        """The terminal went away."""
        self.closed = True
        self.followed.clear()
        self.timer.stop()

    def due(self) -> float | None:
        return self.timer.due()

    def check(self) -> None:
        if not self.timer.ready():
            return
        for prefix, files in list(self.followed.values()):
            for followed in files:
                self._follow(prefix, followed)
        self._send()
        self.timer.again(bool(self.followed or self.waiting) and not self.closed)

    # -- reading the files --------------------------------------------------------------------

    def _follow(self, prefix: bytes, followed: _Followed) -> None:
        with contextlib.suppress(OSError):  # a log we cannot read never stops us
            fd = os.open(followed.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                if os.fstat(fd).st_size < followed.offset:  # rotated (copytruncate)
                    followed.offset = 0
                data = os.pread(fd, MAX_PENDING, followed.offset)
            finally:
                os.close(fd)
            followed.offset += len(data)
            self._lines(prefix, followed, followed.partial + data)

    def _lines(self, prefix: bytes, followed: _Followed, data: bytes) -> None:
        end = data.rfind(b"\n") + 1
        for line in data[:end].splitlines(keepends=True):
            self._queue(followed.stream, prefix + line)
        rest = data[end:]
        while len(rest) > MAX_LINE:
            self._queue(followed.stream, prefix + rest[:MAX_LINE] + b"\n")
            rest = rest[MAX_LINE:]
        followed.partial = rest

    # -- writing the console ------------------------------------------------------------------

    def _queue(self, stream: int, line: bytes) -> None:
        out = self.streams[stream]
        if len(out.pending) + len(line) > MAX_PENDING:
            out.dropped += len(line)
            return
        if out.dropped:
            out.pending += f"[corral: {out.dropped} bytes dropped]\n".encode()
            out.dropped = 0
        out.pending += line

    @property
    def waiting(self) -> bool:
        """Console output is queued, waiting for the console to take it."""
        return any(out.pending for out in self.streams.values())

    def _send(self) -> None:
        for out in self.streams.values():
            while out.pending and not self.closed:
                try:
                    ready = select.poll()
                    ready.register(out.fd, select.POLLOUT)
                    events = ready.poll(0)
                    if not events:
                        break  # slow: the rest waits for the next check
                    if events[0][1] & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                        raise BrokenPipeError
                    sent = os.write(out.fd, out.pending[:_PIECE])
                except BlockingIOError:
                    break
                except OSError:  # EPIPE, EIO: the console is gone
                    self.hangup()
                    return
                del out.pending[:sent]
