"""A pilot worker's ledger of ends: what it reported, kept on the shared file system.

The worker appends each job's end report (the End wire line, as sent) to
ROOT/ID/pilot/WORKER/ends before it sends it. When the launcher judges a worker gone, the ends
it never received (the worker was cut off: the launcher crashed, the network failed) are read
back from there, so those jobs end as they really ended, not LOST.

The file is written by a process the launcher does not trust more than a worker's stream: every
line decodes as an End (wire.py, typed with ranges) or is ignored and counted; an end for a job
the worker does not hold at that attempt is ignored and counted too (a duplicate, a job it never
held). Only the last MAX_READ bytes are read (the ends not yet reported are the newest).
Not fsync'd: a line lost with its node leaves its job LOST, as before the ledger; never wrong.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from corral.backends.pilot_wire import End, WireError, decode_for_launcher, encode

LEDGER = "ends"
MAX_READ = 16 * 1024 * 1024  # bytes read from a ledger's end


@dataclass
class Recovered:
    """A ledger read back: the ends of held jobs, and what was ignored (counts)."""

    ends: list[End] = field(default_factory=list)
    garbage: int = 0  # lines that are not an End (torn, corrupt, hostile, too long)
    stale: int = 0  # ends of jobs not held at that attempt (reported already, or never held)


def append_ends(path: Path, ends: list[End]) -> None:
    """Append these reports to the ledger in one write (O_APPEND, no symlink followed)."""
    if not ends:
        return
    data = b"".join(encode(end) for end in ends)
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def read_ends(path: Path, held: dict[int, int]) -> Recovered:
    """The last end of each held job (job -> attempt) found in the ledger at `path`."""
    out = Recovered()
    data = _tail(path)
    if data is None:
        return out
    lines = data.split(b"\n")
    if data and not data.endswith(b"\n"):
        lines[-1] = b"x"  # a torn last line (the worker died writing it)
    found: dict[int, End] = {}
    for line in lines:
        if not line.strip():
            continue
        try:
            message = decode_for_launcher(line)
        except WireError:
            out.garbage += 1
            continue
        if not isinstance(message, End):
            out.garbage += 1
        elif held.get(message.job) != message.attempt:
            out.stale += 1
        else:
            if message.job in found:
                out.stale += 1
            found[message.job] = message
    out.ends = [found[job] for job in sorted(found)]
    return out


def _tail(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        size = info.st_size
        start = max(0, size - MAX_READ)
        data = os.pread(fd, MAX_READ, start)
    except OSError:
        return None
    finally:
        os.close(fd)
    if start > 0:
        data = b"x" + data  # the first line was cut by the window: garbage, not an end
    return data
