"""Starting the server: the token, the address rule, uvicorn."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from uvicorn.protocols.http.h11_impl import H11Protocol

from corral.observe.auth import is_loopback, load_or_create_token

MAX_CONNECTIONS = 512
HEAD_DEADLINE = 10.0  # seconds for a request's line and headers (a client sends them at once)


class HeadDeadline(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request head (line and headers)
    is not whole HEAD_DEADLINE seconds after the connection opened or the last response ended.

    uvicorn itself times only an idle keep-alive and only after a response: a client that sends
    half a head and then nothing kept its connection forever, and MAX_CONNECTIONS of them
    (slowloris) made every other request a 503 for as long as they stayed open.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not self._waiting_after:  # a new request's head was parsed
            self._disarm()

    def on_response_complete(self) -> None:
        # keep-alive: the next head must come whole in time too. Armed first: the call below
        # may already parse a pipelined head (a new cycle, which the timer then spares)
        self._arm()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._waiting_after = self.cycle
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(HEAD_DEADLINE, self._too_slow)

    def _disarm(self) -> None:
        timer: asyncio.TimerHandle | None = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _too_slow(self) -> None:
        self._head_timer = None
        if self.cycle is self._waiting_after and not self.transport.is_closing():
            self.transport.close()


def serve(root: Path, host: str, port: int, token_file: Path | None) -> None:
    import uvicorn

    from corral.observe.app import create_app

    path = token_file or root / "serve.token"
    token = load_or_create_token(path, create=token_file is None)
    require_all = not is_loopback(host)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log = logging.getLogger("corral.observe")
    log.info(
        "serving %s on http://%s:%d (token in %s; %s)",
        root,
        host,
        port,
        path,
        "every request needs it" if require_all else "POST requests need it",
    )
    app = create_app(root, token, require_all=require_all)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
        limit_concurrency=MAX_CONNECTIONS,  # beyond it: 503, not a server out of file descriptors
        http=HeadDeadline,
        timeout_keep_alive=5,
    )
