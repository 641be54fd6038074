"""The processes a test started under its root: every one carries CORRAL_ROOT=ROOT in its
environment (the CLI sets it for supervisors, runs inherit it), so a test finds and kills what
it left behind without touching anyone else's."""

from __future__ import annotations

import os
from pathlib import Path


def marked(root: Path) -> list[int]:
    """Pids of the processes started under ROOT, this one left out."""
    needle = f"\0CORRAL_ROOT={root}\0".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in b"\0" + f.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found
