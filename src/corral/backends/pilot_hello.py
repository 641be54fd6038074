"""A pilot worker's side of its hello: what it says, the launcher's answer, its time left.

The hello is the first line of the worker's connection to the launcher's control listener
(op "pilot", checked there with the task's token: protocol.PilotHello); the answer says whether
the stream may begin. `allocation_end` is when Slurm ends the worker's allocation, which the
hello tells the launcher (it gives the worker no job that would outlast it).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass

import msgspec

from corral.backends.slurm_client import SlurmClient
from corral.backends.slurm_errors import SlurmError
from corral.spec.address import parse_address

log = logging.getLogger("corral.worker")


@dataclass(frozen=True)
class Hello:
    token: str
    worker: str
    cpus: int
    memory: int
    ends_at: float
    session: str
    known: list[tuple[int, int]]  # (job, attempt) it holds or reported without an ack

    def line(self) -> bytes:
        return (
            msgspec.json.encode(
                {
                    "op": "pilot",
                    "token": self.token,
                    "worker": self.worker,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "cpus": self.cpus,
                    "memory": self.memory,
                    "ends_at": self.ends_at,
                    "session": self.session,
                    "known": [list(k) for k in self.known],
                }
            )
            + b"\n"
        )


def say_hello(
    address: str, hello: Hello, timeout: float
) -> tuple[socket.socket, dict[str, object], bytes] | None:
    """Connect to the launcher at `address` and say hello: the socket, its answer and what
    followed it, or None (not reachable now: try again later)."""
    try:
        host, port = parse_address(address.removeprefix("tcp://"))
        conn = socket.create_connection((host, port), timeout=timeout)
    except (OSError, ValueError):
        return None
    try:
        conn.sendall(hello.line())
        answer, rest = read_answer(conn)
    except OSError:
        conn.close()
        return None
    return conn, answer, rest


def allocation_end(limit: float, client: SlurmClient | None = None) -> float:
    """When Slurm ends this worker's allocation: now plus its time left as squeue tells it
    (the limit Slurm holds, counted from the allocation's start: a wait in the queue, a limit
    changed since submission or rounded up to minutes all count), else now plus `limit`
    (not under Slurm, or squeue failed). Slurm 22.05 sets no SLURM_JOB_END_TIME."""
    job = os.environ.get("SLURM_JOB_ID", "")
    now = time.time()
    if job:
        try:
            left = (client or SlurmClient()).time_left([job])
        except SlurmError as exc:
            log.warning("worker: squeue did not tell our time left (%s): counting from our start", exc)
            left = {}
        if len(left) == 1:
            return now + next(iter(left.values()))
    return now + limit


def read_answer(conn: socket.socket) -> tuple[dict[str, object], bytes]:
    """The launcher's answer to our hello, and what came after it in the same reads (the
    stream's first messages: a reconnect's resent jobs follow the answer at once)."""
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > 65536:
            break
    line, _, rest = data.partition(b"\n")
    try:
        answer = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return {"ok": False, "error": "not an answer"}, b""
    if not isinstance(answer, dict):
        return {"ok": False, "error": "not an answer"}, b""
    return answer, rest
