"""The control socket: how `corral kill/pause/submit/heartbeat` reach a live supervisor.

One JSON object per line each way, on a unix stream socket beside the journal and, if asked,
on a TCP address (then every request carries the task's token). The supervisor never waits
for a client: sockets are non-blocking and read as data arrives; a request must be complete
within REQUEST_DEADLINE and MAX_REQUEST bytes, and its answer read within the same deadline,
or the client is dropped. A client trickling one byte at a time costs the loop nothing more
than one wake-up per byte.

MAX_REQUEST equals the journal's MAX_FRAME: a request that changes state becomes one record,
and a request larger than a record could never be journaled.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from corral.journal import MAX_FRAME
from corral.spec.address import parse_address

log = logging.getLogger("corral.supervisor")

MAX_REQUEST = MAX_FRAME  # one request, at most one journal record's worth of bytes
REQUEST_DEADLINE = 5.0  # seconds to send a whole request, and again to read its answer
MAX_CLIENTS = 256  # connections open at once; more are refused at accept


@dataclass(slots=True)
class Client:
    sock: socket.socket
    deadline: float  # monotonic
    tcp: bool  # came over TCP: needs the token
    peer: str
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytes = b""
    done: bool = False  # its request is read (or refused): no more reading
    rest: bytes = b""  # what came after the request's line: a released stream's first bytes

    def fileno(self) -> int:
        return self.sock.fileno()


class ControlServer:
    """Listening sockets plus the clients being served; `register`/`unregister` are the
    loop's (selector) calls, so that the server never owns the wait."""

    def __init__(
        self,
        path: str,
        register: Callable[[int, str, bool], None],
        unregister: Callable[[int], None],
        *,
        tcp: tuple[str, int] | None = None,
    ) -> None:
        self.path = path
        self._register = register
        self._unregister = unregister
        self.clients: dict[int, Client] = {}
        self.listeners: dict[int, tuple[socket.socket, bool]] = {}
        self.address: tuple[str, int] | None = None  # the TCP address, once bound
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # only the owner may connect (the socket may live in /tmp when the path is long):
        # the umask is the one way to create a socket file without a window
        old = os.umask(0o177)
        try:
            unix.bind(path)
        finally:
            os.umask(old)
        self._listen(unix, tcp=False)
        if tcp is not None:
            family = socket.AF_INET6 if ":" in tcp[0] else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(tcp)
            except OSError:
                sock.close()
                self.close()
                raise
            self.address = sock.getsockname()[:2]
            self._listen(sock, tcp=True)

    def _listen(self, sock: socket.socket, *, tcp: bool) -> None:
        sock.listen(64)
        sock.setblocking(False)
        self.listeners[sock.fileno()] = (sock, tcp)
        self._register(sock.fileno(), "control", False)

    # -- the loop's calls ----------------------------------------------------------------------

    def ready(self, fd: int) -> list[tuple[Client, bytes]]:
        """A registered fd is ready: accept, read or write. Returns the requests completed."""
        if fd in self.listeners:
            self._accept(*self.listeners[fd])
            return []
        client = self.clients.get(fd)
        if client is None:
            return []
        if client.done:
            self._send(client)
            return []
        return self._read(client)

    def expire(self) -> None:
        """Drop clients past their deadline (a slow or silent client holds nothing)."""
        now = time.monotonic()
        for client in [c for c in self.clients.values() if c.deadline <= now]:
            log.warning("control: dropped %s: no complete request or answer read in time", client.peer)
            self._drop(client)

    def next_deadline(self) -> float | None:
        """Seconds until the first client deadline (None: no client)."""
        if not self.clients:
            return None
        return max(0.0, min(c.deadline for c in self.clients.values()) - time.monotonic())

    def answer(self, client: Client, message: dict[str, Any]) -> None:
        """Queue the answer and send what the socket takes now; the rest when it is writable."""
        if client.fileno() < 0 or client.fileno() not in self.clients:
            return
        client.done = True
        client.outbox = json.dumps(message).encode() + b"\n"
        client.deadline = time.monotonic() + REQUEST_DEADLINE
        self._send(client)
        if client.outbox:
            self._unregister(client.fileno())
            self._register(client.fileno(), "client", True)

    def release(self, client: Client, deadline: float | None = None) -> socket.socket | None:
        """Hand a client's socket over (a stream that outlives one answer: an executor's
        watch); with `deadline`, keep serving it but allow it that long for its answer.
        Bytes the client sent after its request were read already: they are `client.rest`."""
        if deadline is not None:
            client.deadline = deadline
            return None
        fd = client.fileno()
        if self.clients.pop(fd, None) is None:
            return None
        self._unregister(fd)
        return client.sock

    def close(self) -> None:
        for client in list(self.clients.values()):
            self._drop(client)
        for sock, _tcp in self.listeners.values():
            self._unregister(sock.fileno())
            sock.close()
        self.listeners.clear()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    # -- inside --------------------------------------------------------------------------------

    def _accept(self, listener: socket.socket, tcp: bool) -> None:
        while True:
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: try again on the next wake-up
                log.warning("control: accept failed: %s", exc)
                return
            if len(self.clients) >= MAX_CLIENTS:
                sock.close()
                continue
            sock.setblocking(False)
            peer = f"{addr[0]}:{addr[1]}" if tcp else "unix socket"
            client = Client(sock, time.monotonic() + REQUEST_DEADLINE, tcp, peer)
            self.clients[sock.fileno()] = client
            self._register(sock.fileno(), "client", False)

    def _read(self, client: Client) -> list[tuple[Client, bytes]]:
        while True:
            try:
                chunk = client.sock.recv(min(65536, MAX_REQUEST + 1 - len(client.inbox)))
            except (BlockingIOError, InterruptedError):
                return []
            except OSError:
                self._drop(client)
                return []
            if not chunk:  # the client finished sending: what came is the request
                if not client.inbox:
                    self._drop(client)
                    return []
                return self._complete(client, bytes(client.inbox))
            end = chunk.find(b"\n")
            if end >= 0:
                client.rest = chunk[end + 1 :]
                return self._complete(client, bytes(client.inbox + chunk[:end]))
            client.inbox += chunk
            if len(client.inbox) > MAX_REQUEST:
                self.answer(client, _too_large())
                return []

    def _complete(self, client: Client, data: bytes) -> list[tuple[Client, bytes]]:
        client.done = True
        client.inbox = bytearray()
        client.deadline = time.monotonic() + REQUEST_DEADLINE  # now: for the answer to be read
        if len(data) > MAX_REQUEST:
            self.answer(client, _too_large())
            return []
        self._unregister(client.fileno())  # nothing more to read; the answer may need a write wait
        return [(client, data)]

    def _send(self, client: Client) -> None:
        try:
            while client.outbox:
                sent = client.sock.send(client.outbox)
                client.outbox = client.outbox[sent:]
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            client.outbox = b""
        self._drop(client)

    def _drop(self, client: Client) -> None:
        fd = client.fileno()
        if self.clients.pop(fd, None) is not None:
            self._unregister(fd)
        client.sock.close()


def _too_large() -> dict[str, Any]:
    return {
        "ok": False,
        "error": f"request larger than {MAX_REQUEST} bytes (one journal record); submit in parts",
    }


def request(address: str, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to a live supervisor; raises OSError when nobody listens.

    `address`: a unix socket path, or tcp://HOST:PORT (then the token is sent, from
    CORRAL_TOKEN unless the message has one)."""
    if address.startswith("tcp://") and "token" not in message and os.environ.get("CORRAL_TOKEN"):
        message = {**message, "token": os.environ["CORRAL_TOKEN"]}
    payload = json.dumps(message).encode() + b"\n"
    if len(payload) > MAX_REQUEST + 1:  # refused here rather than cut off mid-send
        return _too_large()
    if address.startswith("tcp://"):
        host, port = parse_address(address[len("tcp://") :])
        sock = socket.create_connection((host, port), timeout=timeout)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
    with sock:
        sock.settimeout(timeout)
        sock.sendall(payload)
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
