"""Reaching a supervisor from elsewhere: its TCP listener's address and the task's token.

A supervisor listens on TCP when its spec says `control: {listen: HOST:PORT}`, when
`corral run --listen` says so, and by default for `backend: slurm` (jobs on other nodes must
reach it). Every TCP request must carry the task's token: a secret created once per task,
stored 0600 in the task directory, handed to runs as CORRAL_TOKEN. The address the supervisor
bound is published in the task directory (control.tcp) for the Slurm jobs of the task.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from pathlib import Path

from corral.core.records import Opened
from corral.spec.address import parse_address
from corral.supervisor.layout import Layout

TOKEN_FILE = "token"
ADDRESS_FILE = "control.tcp"
ANY = ("0.0.0.0", 0)  # the Slurm default: every interface, a free port (the token guards it)


def listen_address(opened: Opened | None) -> tuple[str, int] | None:
    """Where to listen on TCP, if anywhere: --listen (kept in the journal's context, so a
    recovery listens again), else the spec's control.listen, else the Slurm default."""
    if opened is None:
        return None
    spec = opened.spec
    listen = opened.context.get("listen") or (spec.get("control") or {}).get("listen")
    if listen:
        return parse_address(str(listen))
    return ANY if spec.get("backend") == "slurm" else None


def advertised(bound: tuple[str, int]) -> str:
    """The address runs are given: the host as bound, or this host's name for a wildcard."""
    host, port = bound
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"tcp://{host}:{port}"


def task_token(layout: Layout) -> str:
    """The task's secret: created once (0600, never through a symlink), then read back."""
    path = layout.dir / TOKEN_FILE
    flags = os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags | os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_token(path)
    token = secrets.token_urlsafe(32)
    try:
        os.write(fd, token.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return token


def _read_token(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        info = os.fstat(fd)
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise PermissionError(f"{path}: must be the owner's alone (0600) to be trusted")
        return os.read(fd, 4096).decode().strip()
    finally:
        os.close(fd)


def publish(layout: Layout, address: str) -> None:
    """control.tcp: the address a Slurm job of this task is given (written at each start:
    a port 0 listener gets a new port each time)."""
    tmp = layout.dir / (ADDRESS_FILE + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.write_text(address + "\n")
    os.replace(tmp, layout.dir / ADDRESS_FILE)


def published(layout: Layout) -> tuple[str, str] | None:
    """The TCP address and token of the supervisor of `layout`, if it listens on TCP."""
    try:
        address = (layout.dir / ADDRESS_FILE).read_text().strip()
        return address, _read_token(layout.dir / TOKEN_FILE)
    except (OSError, UnicodeDecodeError):
        return None
