"""Who may do what: the bearer token, cross-site refusal and request size limits.

- Every POST needs `Authorization: Bearer TOKEN`; on a non-loopback address every request does.
- The token is ROOT/serve.token (created at first start, mode 0600, never following a symlink)
  or the file given with --token-file; it is compared in constant time.
- A browser's cross-site request cannot set an Authorization header without a CORS preflight,
  which this server never grants; a POST whose Origin (or Sec-Fetch-Site) says it comes from
  another site is refused even with a token, so a token pasted into a page cannot be replayed
  from elsewhere.
- Bodies are limited in size, counted as they arrive (a lying Content-Length does not help),
  and in time; they are read whole before a route sees them.
Refused requests are logged with the client address, never with the token.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("corral.observe")

MAX_BODY = 8 * 1024 * 1024  # a submit of ~100,000 small rows
BODY_DEADLINE = 30.0  # seconds for a whole body: a trickling client holds nothing for long
SAFE_METHODS = frozenset({"GET", "HEAD"})
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class TokenError(Exception):
    pass


def load_or_create_token(path: Path, create: bool) -> str:
    """The token in `path`; created (0600, O_EXCL, no symlink followed) when missing and allowed."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        if not create:
            raise TokenError(f"{path}: no such token file") from None
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token
    except OSError as exc:
        raise TokenError(f"{path}: cannot read the token ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise TokenError(f"{path}: not a regular file")
        if st.st_mode & 0o077:
            raise TokenError(f"{path}: readable by others (mode {st.st_mode & 0o777:o}); chmod 600 it")
        token = f.read(4096).decode("utf-8", errors="replace").strip()
    if len(token) < 16:
        raise TokenError(f"{path}: a token has at least 16 characters")
    return token


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


class Guard:
    """ASGI middleware applying the rules above before any route runs."""

    def __init__(self, app: Any, token: str, require_all: bool) -> None:
        self.app = app
        self.token = token.encode()
        self.require_all = require_all

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        problem = self._check(scope, headers, method)
        if problem is not None:
            status, message = problem
            client = scope.get("client") or ("?", 0)
            log.warning("refused %s %s from %s: %s", method, scope["path"], client[0], message)
            await _answer(send, status, message)
            return
        if method in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        try:
            body = await asyncio.wait_for(_read_body(receive), BODY_DEADLINE)
        except TimeoutError:
            log.warning("refused %s %s: body too slow", method, scope["path"])
            await _answer(send, 408, f"the body must arrive within {BODY_DEADLINE:.0f} s")
            return
        if body is None:
            log.warning("refused %s %s: body larger than %d bytes", method, scope["path"], MAX_BODY)
            await _answer(send, 413, f"a body is at most {MAX_BODY} bytes")
            return
        await self.app(scope, _replay(body, receive), send)

    def _check(self, scope: dict[str, Any], headers: dict[str, str], method: str) -> tuple[int, str] | None:
        control = method not in SAFE_METHODS
        if control or self.require_all:
            given = headers.get("authorization")
            if given is None:
                return 401, "this needs 'Authorization: Bearer TOKEN' (see ROOT/serve.token)"
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), self.token):
                return 403, "wrong token"
        if control:
            if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
                return 403, "cross-site request refused"
            origin = headers.get("origin")
            if origin is not None and not _same_origin(origin, scope, headers):
                return 403, f"cross-origin request from {origin[:100]!r} refused"
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                return 413, f"a body is at most {MAX_BODY} bytes"
        return None


def _same_origin(origin: str, scope: dict[str, Any], headers: dict[str, str]) -> bool:
    parts = urlsplit(origin)
    host = headers.get("host", "")
    return parts.scheme in ("http", "https") and parts.netloc == host


async def _read_body(receive: Any) -> bytes | None:
    """The whole body, or None past MAX_BODY (counted as it arrives: chunked bodies too)."""
    parts: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(parts)  # the client went away; the route sees an empty body
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > MAX_BODY:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def wrapped() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        message: dict[str, Any] = await receive()  # http.disconnect, when it comes
        return message

    return wrapped


async def _answer(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="corral"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
