"""A driver's two ways to its supervisor: one request per connection, and one watch stream.

`address` is the supervisor's unix socket path, or tcp://HOST:PORT: a call running on another
host (a Slurm node) reaches its executor's supervisor over TCP, with the task's token
(CORRAL_TOKEN) in every request.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from corral.spec.address import parse_address
from corral.supervisor import control

TCP = "tcp://"


class SupervisorGone(ConnectionError):
    pass


def address_for(task_id: str, unix_path: str, in_call: bool) -> str:
    """Where a driver reaches its supervisor: inside a call of this executor, the address its
    run was given (CORRAL_CONTROL: TCP on a Slurm node); else the unix socket."""
    given = os.environ.get("CORRAL_CONTROL", "")
    if in_call and given.startswith(TCP) and os.environ.get("CORRAL_TASK_ID") == task_id:
        return given
    return unix_path


def connect(address: str, timeout: float | None) -> socket.socket:
    if address.startswith(TCP):
        host, port = parse_address(address[len(TCP) :])
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def encode(address: str, message: dict[str, Any]) -> bytes:
    """One request line; over TCP it carries the task's token."""
    if address.startswith(TCP) and "token" not in message and os.environ.get("CORRAL_TOKEN"):
        message = {**message, "token": os.environ["CORRAL_TOKEN"]}
    return json.dumps(message).encode() + b"\n"


def ask(address: str, message: dict[str, Any], timeout: float | None = 60.0) -> dict[str, Any]:
    """One request; raises SupervisorGone if nobody answers, RuntimeError if it refuses."""
    try:
        with connect(address, timeout) as sock:
            sock.sendall(encode(address, message))
            data = bytearray()
            while not data.endswith(b"\n"):
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
    except (OSError, ValueError) as exc:
        raise SupervisorGone(f"the executor's supervisor does not answer at {address}: {exc}") from None
    if not data:
        raise SupervisorGone("the executor's supervisor closed the connection without an answer")
    answer = json.loads(data)
    if not isinstance(answer, dict):
        raise SupervisorGone("the executor's supervisor sent a malformed answer")
    return answer


def alive(address: str) -> bool:
    try:
        return bool(ask(address, {"op": "ping"}, timeout=5.0).get("ok"))
    except (SupervisorGone, ValueError):
        return False


class Watch:
    """The stream of final call ends, read by a daemon thread that calls `on_ends(list)`;
    `on_lost()` when the stream ends without our closing it (the supervisor died)."""

    def __init__(
        self, address: str, on_ends: Callable[[list[Any]], None], on_lost: Callable[[], None]
    ) -> None:
        self.sock = connect(address, 10.0)
        self.sock.sendall(encode(address, {"op": "watch"}))
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


__all__ = ["SupervisorGone", "Watch", "address_for", "alive", "ask", "control"]
