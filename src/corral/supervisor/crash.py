"""Fault injection for the crash tests: CORRAL_CRASH=POINT:N dies (SIGKILL) at the Nth POINT."""

from __future__ import annotations

import os
import signal


class CrashPoints:
    def __init__(self, value: str | None = None) -> None:
        value = os.environ.get("CORRAL_CRASH") if value is None else value
        self.point: tuple[str, int] | None = None
        if value:
            name, _, count = value.partition(":")
            self.point = (name, int(count or 1))

    def hit(self, name: str) -> None:
        if self.point is not None and self.point[0] == name:
            left = self.point[1] - 1
            self.point = (name, left)
            if left <= 0:
                os.kill(os.getpid(), signal.SIGKILL)
