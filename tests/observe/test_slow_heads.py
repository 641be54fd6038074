"""Slowloris against a real `corral serve`: connections that never finish their request head.

uvicorn times only an idle keep-alive after a response, so MAX_CONNECTIONS half-sent heads
held their connections forever and every other request got 503 for as long as they stayed.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from observe_helpers import Server, wait_for

from corral.observe.server import HEAD_DEADLINE, MAX_CONNECTIONS


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "root")
    yield server
    output = server.stop()
    assert "Traceback" not in output, output


def _half_head(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /api/v1/tasks HTTP/1.1\r\nHost: x\r\n")  # never the blank line
    return sock


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(100) == b""
    except TimeoutError:
        return False
    except OSError:  # reset
        return True


def _response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body): the next recv is the server's."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(4096)
    return data


def _answered(url: str) -> bool:
    try:
        return httpx.get(url, timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def test_connections_that_never_finish_their_head_are_closed_and_service_returns(server: Server) -> None:
    slow = [_half_head(server.port) for _ in range(MAX_CONNECTIONS + 20)]
    try:
        started = time.monotonic()
        url = server.url + "/api/v1/tasks"
        wait_for(lambda: _answered(url), timeout=HEAD_DEADLINE + 120)
        assert all(_closed_by_server(s, within=HEAD_DEADLINE + 120) for s in slow)
        assert time.monotonic() - started >= HEAD_DEADLINE - 1  # the deadline, not a reset at once
    finally:
        for sock in slow:
            sock.close()


def test_a_keep_alive_connection_gets_the_same_deadline_for_its_next_head(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"GET /api/v1/tasks HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _response(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /api/v1/tasks HTTP/1.1\r\n")  # the second head, never finished
        assert _closed_by_server(sock, within=HEAD_DEADLINE + 120)


def test_whole_requests_on_one_connection_are_still_served(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:  # keep-alive: one connection
        assert [client.get("/api/v1/tasks").status_code for _ in range(5)] == [200] * 5
