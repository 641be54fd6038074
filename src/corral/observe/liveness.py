"""Which journals have a live supervisor, without touching their locks.

`corral status` probes a journal's lock with a shared flock; a server polled many times a
second must not, because a supervisor starting at that instant would find the lock taken. The
kernel lists every held flock in /proc/locks (type, pid, device and inode), so reading that one
file answers for all tasks at once and takes no lock at all.
"""

from __future__ import annotations

import os
import threading
import time

from corral.journal.writer import lock_path

MAX_AGE = 0.5  # seconds a reading of /proc/locks is reused (it costs ~8 ms on a busy host)
_cache: tuple[float, set[tuple[int, int, int]]] = (0.0, set())
_cache_lock = threading.Lock()


def recent_flocks() -> set[tuple[int, int, int]]:
    """held_flocks(), read at most every MAX_AGE seconds: a page polled by twenty clients
    learns of a new or ended supervisor within half a second."""
    global _cache
    now = time.monotonic()
    with _cache_lock:
        at, held = _cache
        if now - at < MAX_AGE:
            return held
        held = held_flocks()
        _cache = (now, held)
        return held


def held_flocks(locks_file: str = "/proc/locks") -> set[tuple[int, int, int]]:
    """(major, minor, inode) of every file an exclusive flock is held on."""
    held: set[tuple[int, int, int]] = set()
    try:
        with open(locks_file, encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return held
    for line in text.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:1442499 0 EOF"; blocked waiters start with "->"
        if len(fields) < 6 or fields[1] != "FLOCK" or fields[3] != "WRITE":
            continue
        parts = fields[5].split(":")
        if len(parts) != 3:
            continue
        try:
            held.add((int(parts[0], 16), int(parts[1], 16), int(parts[2])))
        except ValueError:
            continue
    return held


def supervised(journal: str | os.PathLike[str], held: set[tuple[int, int, int]]) -> bool:
    """True when a supervisor holds the writer lock of this journal (held = held_flocks())."""
    try:
        st = os.stat(lock_path(journal))
    except OSError:
        return False
    return (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino) in held
