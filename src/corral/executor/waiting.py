"""Inside a call: concurrent.futures.wait and as_completed give the call's slot back too.

Future.result() and exception() pause the call themselves (Driver.pause_for). The standard
functions wait differently: they install a waiter (an object with a threading.Event) on each
unfinished future, under the futures' locks, then block on that event. A call's futures keep
their waiters in a `Waiters` list, whose `append` swaps the new waiter's event (created a
moment earlier, not yet seen by anyone) for a `YieldingEvent`: its wait() first pauses the call
until the futures it stands for are done (all of them for wait(ALL_COMPLETED), any one for
FIRST_COMPLETED, FIRST_EXCEPTION and as_completed), then waits as before. So it works however
the user imported the function. A wait with timeout=0 (a poll) does not pause.

The driver's own waits (for results to come in on the watch stream after a wake-up) run
`internal()`, so they do not pause the call again.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

_local = threading.local()

Pause = Callable[[list[Any], bool, Callable[[], bool]], None]  # (futures, first, over)


@contextlib.contextmanager
def internal() -> Iterator[None]:
    """The driver's own waits on futures: not a user's wait, no pause."""
    before = getattr(_local, "on", False)
    _local.on = True
    try:
        yield
    finally:
        _local.on = before


def _first(waiter: Any) -> bool:
    """Whether the waiter is satisfied by one finished future (everything but ALL_COMPLETED,
    which concurrent.futures installs as an _AllCompletedWaiter that stops on nothing)."""
    every = type(waiter).__name__ == "_AllCompletedWaiter"
    return not (every and not getattr(waiter, "stop_on_exception", True))


class YieldingEvent(threading.Event):
    def __init__(self, pause: Pause, first: bool) -> None:
        super().__init__()
        self.pause, self.first = pause, first
        self.futures: list[Any] = []

    def wait(self, timeout: float | None = None) -> bool:
        if not self.is_set() and (timeout is None or timeout > 0):
            pending = [f for f in self.futures if not f.done()]
            if pending:
                self.pause(pending, self.first, self.is_set)
        return super().wait(timeout)


class Waiters(list):  # type: ignore[type-arg]
    """A call's future's list of waiters (concurrent.futures' `_waiters`)."""

    def __init__(self, future: Any, pause: Pause) -> None:
        super().__init__()
        self.future, self.pause = future, pause

    def append(self, waiter: Any) -> None:
        if not getattr(_local, "on", False) and isinstance(getattr(waiter, "event", None), threading.Event):
            event = waiter.event
            if not isinstance(event, YieldingEvent):
                event = waiter.event = YieldingEvent(self.pause, _first(waiter))
            event.futures.append(self.future)
        super().append(waiter)
