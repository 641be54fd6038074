"""The supervisor's wait: one selector over its file descriptors, signals and timers.

Signals arrive as bytes on a wakeup pipe (signal.set_wakeup_fd): the handlers only count,
so nothing is written to the journal or the reaper from inside a handler. SIGCHLD wakes the
loop (exits of our children), SIGINT/SIGTERM count as interrupts (a kill request each),
SIGHUP (the terminal went away) sends our own output to /dev/null and is noted.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
from typing import Any

_HANDLED = (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# the longest single wait: a deadline years away (kill_grace: 1e300) overflows poll()'s
# time_t; waking once an hour before it changes nothing, the caller only waits again
LONGEST_WAIT = 3600.0


class Loop:
    def __init__(self) -> None:
        self.interrupts = 0
        self.hung_up = False
        self._selector: selectors.BaseSelector | None = None
        self._wake: tuple[int, int] | None = None
        self._old_fd = -1
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Loop:
        self._selector = selectors.DefaultSelector()
        wake_r, wake_w = self._wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(wake_r, selectors.EVENT_READ, "wake")
        self._old_fd = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        self._old = {s: signal.getsignal(s) for s in _HANDLED}
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGINT, self._interrupt)
        signal.signal(signal.SIGTERM, self._interrupt)
        signal.signal(signal.SIGHUP, self._hangup)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.set_wakeup_fd(self._old_fd)
        for s, h in self._old.items():
            signal.signal(s, h)
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        if self._wake is not None:
            for fd in self._wake:
                os.close(fd)
            self._wake = None

    @property
    def active(self) -> bool:
        return self._selector is not None

    def register(self, fd: int, tag: str, write: bool = False) -> None:
        """Wake up when `fd` is readable (or writable, with `write`); `wait` returns `tag`."""
        if self._selector is not None:
            self._selector.register(fd, selectors.EVENT_WRITE if write else selectors.EVENT_READ, tag)

    def unregister(self, fd: int) -> None:
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(fd)

    def wait(self, timeout: float | None) -> list[tuple[str, int]]:
        """(tag, fd) of every descriptor ready within `timeout` (None: until one is)."""
        assert self._selector is not None and self._wake is not None
        ready: list[tuple[str, int]] = []
        if timeout is not None:
            timeout = min(timeout, LONGEST_WAIT)
        for key, _ in self._selector.select(timeout):
            if key.data == "wake":
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake[0], 4096):
                        pass
            else:
                ready.append((key.data, key.fd))
        return ready

    def _interrupt(self, signum: int, frame: object) -> None:
        self.interrupts += 1

    def _hangup(self, signum: int, frame: object) -> None:
        # the terminal went away: keep supervising, quietly (nothing worse than detaching)
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.close(devnull)
        self.hung_up = True  # the reaper is told in the loop: never write frames from a handler


def earliest(*times: float | None) -> float | None:
    """The first of several optional deadlines."""
    present = [t for t in times if t is not None]
    return min(present) if present else None
