"""`Every`: a check repeated at an interval while something needs it, asleep otherwise.

The log rotator and the console mirror share this shape: the first thing to watch arms the
timer, the loop waits until `due()`, the owner does its work when `ready()`, then re-arms
(`again(True)`) or sleeps (`again(False)`) depending on whether anything is left to watch.
"""

from __future__ import annotations

import time


class Every:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.at: float | None = None  # the next check (wall clock); None: asleep

    def start(self) -> None:
        """Something needs checking: the first check one interval from now (if none is due)."""
        if self.at is None:
            self.at = time.time() + self.interval

    def stop(self) -> None:
        self.at = None

    def due(self) -> float | None:
        return self.at

    def ready(self) -> bool:
        return self.at is not None and time.time() >= self.at

    def again(self, busy: bool) -> None:
        """After a check: the next one an interval from now while busy, else asleep."""
        self.at = time.time() + self.interval if busy else None
