"""A driver's two ways to its supervisor: one request per connection, and one watch stream."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable
from typing import Any

from corral.supervisor import control


class SupervisorGone(ConnectionError):
    pass


def ask(path: str, message: dict[str, Any], timeout: float | None = 60.0) -> dict[str, Any]:
    """One request; raises SupervisorGone if nobody answers, RuntimeError if it refuses."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(json.dumps(message).encode() + b"\n")
            data = bytearray()
            while not data.endswith(b"\n"):
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise SupervisorGone(f"the executor's supervisor does not answer at {path}: {exc}") from None
    if not data:
        raise SupervisorGone("the executor's supervisor closed the connection without an answer")
    answer = json.loads(data)
    if not isinstance(answer, dict):
        raise SupervisorGone("the executor's supervisor sent a malformed answer")
    return answer


class Watch:
    """The stream of final call ends, read by a daemon thread that calls `on_ends(list)`;
    `on_lost()` when the stream ends without our closing it (the supervisor died)."""

    def __init__(self, path: str, on_ends: Callable[[list[Any]], None], on_lost: Callable[[], None]) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10.0)
        self.sock.connect(path)
        self.sock.sendall(b'{"op": "watch"}\n')
        self.file = self.sock.makefile("rb")
        first = json.loads(self.file.readline() or b"{}")
        if not first.get("ok"):
            self.sock.close()
            raise SupervisorGone(f"the executor's supervisor refused to be watched: {first}")
        self.sock.settimeout(None)
        self.closing = False
        self.lost = False  # the stream ended without our closing it
        self.on_ends, self.on_lost = on_ends, on_lost
        self.thread = threading.Thread(target=self._read, name="corral-executor-watch", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in self.file:
                self.on_ends(json.loads(line).get("ends", []))
        except (OSError, ValueError):
            pass
        if not self.closing:
            self.lost = True
            self.on_lost()

    def close(self) -> None:
        self.closing = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


__all__ = ["SupervisorGone", "Watch", "ask", "control"]
