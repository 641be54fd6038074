"""What the privacy tests read of a task's files: permission bits, never through a symlink.
(The umask they run under is tests/conftest.py's `umask_022` fixture.)"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def mode(path: Path) -> int:
    """PATH's permission bits (of a symlink itself, not of what it points to)."""
    return stat.S_IMODE(os.lstat(path).st_mode)


def regular_files(task: Path) -> list[Path]:
    """Every regular file under TASK (symlinks left out)."""
    return [p for p in task.rglob("*") if p.is_file() and not p.is_symlink()]
