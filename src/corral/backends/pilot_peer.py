"""The launcher's end of one pilot worker: its Slurm job, its connection, the jobs it holds.

No policy here (core/pilot.py decides; backends/pilot.py records): a worker's observed facts,
and the stream's bytes in and out. Sends are non-blocking: what the socket does not take now
waits in `outbox` until it is writable; a peer that cannot keep up is dropped (it reconnects).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.backends.pilot_wire import Lines, ToLauncher, ToWorker, WireError, decode_for_launcher, encode
from corral.core.outcome import Seen
from corral.core.pilot import Need, Room

MAX_OUTBOX = 64 * 1024 * 1024  # bytes waiting for a worker that does not read: then it is dropped


@dataclass
class Peer:
    """One worker as the launcher knows it (name: its Slurm id, SLURMID_INDEX)."""

    name: str
    submitted_at: float
    seen: Seen | None = None
    running_since: float | None = None
    heard_at: float | None = None
    host: str = ""
    pid: int = 0
    cpus: int = 1
    memory: int = 0
    ends_at: float = 0.0
    session: str = ""
    conn: socket.socket | None = None
    lines: Lines = field(default_factory=Lines)
    outbox: bytearray = field(default_factory=bytearray)
    jobs: dict[int, tuple[int, Need]] = field(default_factory=dict)  # job -> (attempt, need)
    idle_since: float | None = None
    running: int = 0  # as its last beat said
    cancelled: bool = False
    stopping: bool = False
    withdrawing: dict[int, str] = field(default_factory=dict)  # asked back, no answer yet -> for whom
    acked: int = -1  # last report seq the launcher asked to forget
    early: bytes = b""  # sent right after the hello, read with it: the stream's first bytes

    @property
    def connected(self) -> bool:
        return self.conn is not None

    @property
    def fd(self) -> int:
        return self.conn.fileno() if self.conn is not None else -1

    def room(self) -> Room:
        cpus = sum(n.cpus for _, n in self.jobs.values())
        memory = sum(n.memory for _, n in self.jobs.values())
        return Room(self.cpus, self.memory, self.ends_at, len(self.jobs), cpus, memory)

    # -- the stream ------------------------------------------------------------------------

    def queue(self, message: ToWorker) -> None:
        if self.conn is not None:
            self.outbox += encode(message)

    def flush(self) -> bool:
        """Send what the socket takes; False: the peer is broken or too far behind (drop it)."""
        if self.conn is None or not self.outbox:
            return True
        try:
            sent = self.conn.send(self.outbox)
        except BlockingIOError:
            sent = 0
        except OSError:
            return False
        del self.outbox[:sent]
        return len(self.outbox) <= MAX_OUTBOX

    def receive(self) -> tuple[list[ToLauncher], bool]:
        """Messages read now, and whether the connection is still open. WireError: garbage."""
        assert self.conn is not None
        chunks: list[bytes] = [self.early] if self.early else []
        self.early = b""
        open_ = True
        while True:
            try:
                data = self.conn.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                open_ = False
                break
            if not data:
                open_ = False
                break
            chunks.append(data)
            if len(data) < (1 << 20) or len(chunks) >= 8:  # the rest on the next wake-up
                break
        lines = self.lines.feed(b"".join(chunks)) if chunks else []
        return [decode_for_launcher(line) for line in lines], open_

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.close()
        self.conn = None
        self.lines = Lines()
        self.outbox.clear()

    def view(self) -> dict[str, Any]:
        """The worker as `corral status` shows it (pilot/workers.json)."""
        return {
            "worker": self.name,
            "slurm_id": self.name,
            "host": self.host,
            "state": (self.seen.value if self.seen is not None else "SUBMITTED"),
            "connected": self.connected,
            "jobs": len(self.jobs),
            "running": self.running,
            "idle_since": self.idle_since,
            "ends_at": self.ends_at or None,
            "heard_at": self.heard_at,
        }


def write_status(where: Path, peers: list[Peer], now: float) -> None:
    """WHERE/workers.json: the workers as `corral status` shows them (display only)."""
    with contextlib.suppress(OSError):
        where.mkdir(parents=True, exist_ok=True)
        views = [p.view() for p in sorted(peers, key=lambda p: p.name)]
        tmp = where / "workers.json.tmp"
        tmp.write_text(json.dumps({"at": now, "host": socket.gethostname(), "workers": views}))
        os.replace(tmp, where / "workers.json")


__all__ = ["Peer", "WireError", "write_status"]
