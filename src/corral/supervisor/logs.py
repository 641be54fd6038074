"""Log rotation by size for runs whose logger asks for it.

Runs write straight to their files (no pipe through the supervisor, so they outlive it). To
rotate such a file we copy it to `NAME.1` (shifting older backups up) and truncate it; the run
opened it with O_APPEND, so its next write lands at the new end. This is logrotate's
copytruncate: a line written between the copy and the truncate can be lost, which is the price
of not piping every byte through the supervisor. Sizes are checked once a second, and only
while some run asks for rotation.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from corral.supervisor import safefs
from corral.supervisor.every import Every

CHECK_INTERVAL = 1.0


class Rotator:
    def __init__(self) -> None:
        self.watched: dict[object, tuple[list[Path], int, int]] = {}
        self.timer = Every(CHECK_INTERVAL)

    def watch(self, key: object, files: list[Path], size: int, backups: int) -> None:
        self.watched[key] = (files, size, backups)
        self.timer.start()

    def forget(self, key: object) -> None:
        if self.watched.pop(key, None) is not None and not self.watched:
            self.timer.stop()

    def due(self) -> float | None:
        return self.timer.due()

    def check(self) -> None:
        if not self.timer.ready():
            return
        for files, size, backups in list(self.watched.values()):
            for path in files:
                with contextlib.suppress(OSError):  # a log we cannot rotate never stops us
                    rotate_if_needed(path, size, backups)
        self.timer.again(bool(self.watched))


def rotate_if_needed(path: Path, size: int, backups: int) -> bool:
    try:
        if path.stat().st_size < size:
            return False
    except FileNotFoundError:
        return False
    if backups > 0:
        for i in range(backups - 1, 0, -1):
            older = path.with_name(f"{path.name}.{i}")
            if older.exists():
                os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
        _copy(path, path.with_name(f"{path.name}.1"))
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)
    return True


def _copy(source: Path, dest: Path) -> None:
    """shutil.copyfile without following a symlink at either end; the copy keeps the
    original's mode (0600 in a private task)."""
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with open(src, "rb") as reader:
        dst = safefs.open_new(dest, os.O_WRONLY | os.O_TRUNC, os.fstat(src).st_mode & 0o777)
        with open(dst, "wb") as writer:
            shutil.copyfileobj(reader, writer)
