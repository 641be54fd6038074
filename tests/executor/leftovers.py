"""Kill what executors under a root left running: supervisors, zygotes, calls."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from corral.journal import lock_holder


def _start_ticks(pid: int) -> int | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2 :].split()[19])


def kill_leftovers(root: Path) -> None:
    """The supervisors (lock holders), zygotes and calls of every executor under `root`."""
    for task in root.iterdir() if root.exists() else []:
        holder = lock_holder(task / "journal")
        if holder is not None and holder != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(holder, signal.SIGKILL)
        ledger = task / "reaper.log"
        if not ledger.exists():
            continue
        started: dict[str, tuple[int, int]] = {}
        for line in ledger.read_text().splitlines():
            f = line.split("\t")
            if f[0] == "R":
                started["R" + f[1]] = (int(f[1]), int(f[2]))
            elif f[0] == "S":
                started[f"{f[1]}.{f[3]}"] = (int(f[4]), int(f[5]))
        for pid, ticks in started.values():
            if _start_ticks(pid) == ticks:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL) if os.getpgid(pid) == pid else os.kill(pid, signal.SIGKILL)
