"""Process identity and process trees, read from /proc.

Identity is (pid, start time in clock ticks since boot) plus the boot id: a bare pid can be
reused, a pid with its start time cannot within one boot.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Iterable

_BOOT_ID: str | None = None


def boot_id() -> str:
    global _BOOT_ID
    if _BOOT_ID is None:
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                _BOOT_ID = f.read().strip()
        except OSError:
            _BOOT_ID = ""
    return _BOOT_ID


def _read_proc(path: str, *, one_record: bool = False) -> bytes:
    """A /proc file through os.open/os.read, not open() (which adds fstat, ioctl and lseek
    calls). A one-record file such as /proc/PID/stat (~300 bytes) comes whole in one read;
    others are read to the end. Called for every run the supervisor starts or ends."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, 4096)
        if one_record or not data:
            return data
        chunks = [data]
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat, or None when the process is gone."""
    try:
        data = _read_proc(f"/proc/{pid}/stat", one_record=True)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name may contain spaces and parentheses: split after the last ')'
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[19])


def is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return True
    return data[data.rindex(b")") + 2 : data.rindex(b")") + 3] == b"Z"


def exists(pid: int) -> bool:
    """Some process (not a zombie) has this pid."""
    return start_ticks(pid) is not None and not is_zombie(pid)


def alive(pid: int, ticks: int) -> bool:
    """The process that was (pid, ticks) still exists and is not a zombie."""
    return pid > 0 and start_ticks(pid) == ticks and not is_zombie(pid)


def environ_has(pid: int, needles: Iterable[bytes]) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = b"\0" + f.read()
    except OSError:
        return False
    return all(n in env for n in needles)


def marker(name: str, value: str) -> bytes:
    return b"\0" + f"{name}={value}".encode() + b"\0"


def find_marked(needles: list[bytes], exclude: int | None = None) -> list[int]:
    """Pids whose environment holds every needle: how escaped descendants are found.

    Processes that daemonize leave their process group and session, but keep the environment
    they inherited (CORRAL_TASK_ID, CORRAL_JOB, ...), so a scan finds them even after the
    supervisor that started them died.
    """
    me = exclude if exclude is not None else os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            pid = int(entry)
            if pid != me and environ_has(pid, needles):
                found.append(pid)
    return found


def signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def signal_pids(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def children_of_self() -> list[int]:
    """Our direct children (with the subreaper flag, orphaned descendants land here)."""
    pid = os.getpid()
    try:
        return [int(x) for x in _read_proc(f"/proc/{pid}/task/{pid}/children").split()]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    """pid's descendants, parents first (from /proc/PID/task/*/children; racy by nature)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                kids = [int(x) for x in _read_proc(f"/proc/{parent}/task/{tid}/children").split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def become_subreaper() -> bool:
    """PR_SET_CHILD_SUBREAPER: orphaned descendants of our runs are re-parented to us."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(36, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


SIGNAL_NAMES = {int(s): s.name for s in signal.Signals}
