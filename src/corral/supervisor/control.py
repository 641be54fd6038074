"""The control socket: how `corral kill/pause/submit/heartbeat` reach a live supervisor.

One JSON object per line each way, on a unix stream socket beside the journal. The supervisor
never blocks on a client for long: reads are bounded in size and time.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from typing import Any

MAX_REQUEST = 4 * 1024 * 1024  # a submit of many jobs fits; anything bigger is refused
CLIENT_TIMEOUT = 2.0


class ControlServer:
    def __init__(self, path: str) -> None:
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self) -> list[tuple[socket.socket, dict[str, Any]]]:
        """Every waiting client with its request; bad requests are answered and dropped here."""
        out: list[tuple[socket.socket, dict[str, Any]]] = []
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return out
            conn.settimeout(CLIENT_TIMEOUT)
            try:
                data = b""
                while not data.endswith(b"\n") and len(data) < MAX_REQUEST:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                request = json.loads(data)
                if not isinstance(request, dict) or "op" not in request:
                    raise ValueError("a request is an object with an 'op'")
                out.append((conn, request))
            except (OSError, ValueError) as exc:
                reply(conn, {"ok": False, "error": f"bad request: {exc}"})

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def reply(conn: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps(message).encode() + b"\n")
    conn.close()


def request(path: str, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to a live supervisor; raises OSError when nobody listens."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data:
        raise ConnectionError("the supervisor closed the connection without an answer")
    answer = json.loads(data)
    if not isinstance(answer, dict):
        raise ConnectionError("the supervisor sent a malformed answer")
    return answer
