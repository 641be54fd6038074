"""Replacing a journal by a shorter one: what a compaction writes, made durable, then renamed.

The new file (`PATH.compact`, the header and the given payloads) is written and fsynced in
full before it is renamed over the journal and the directory is synced. A crash at any step
leaves one whole journal under the name: the old one (the `.compact` file is a leftover the
next writer removes), or the new one, which holds everything the old one said. Readers that
hold the old file finish reading it; they see the new one by its inode (watch.Tail).

`hook(point)` is called at each step (crash injection: CORRAL_CRASH in the supervisor).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from .frame import HEADER, encode_frame

SUFFIX = ".compact"


def leftover(path: str | os.PathLike[str]) -> str:
    """Where a compaction writes the new journal before renaming it over `path`."""
    return os.fspath(path) + SUFFIX


def remove_leftover(path: str | os.PathLike[str]) -> None:
    """Drop what a compaction that died before its rename left (the journal is whole)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(leftover(path))


def fsync_parent(path: str) -> None:
    """Make a file's directory entry durable (a new or renamed file): fsync its directory."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def replace(
    path: str | os.PathLike[str],
    payloads: list[bytes],
    *,
    keep_as: str | None = None,
    hook: Callable[[str], None] = lambda _point: None,
) -> None:
    """Make `payloads` the whole journal at `path`, atomically (the caller holds its lock and
    has committed everything). `keep_as`: a name the old file keeps (a hard link) instead of
    going. Raises ValueError for a payload a frame cannot hold, OSError from the file system
    (the journal is then unchanged)."""
    path = os.fspath(path)
    frames = [encode_frame(p) for p in payloads]  # a bad payload fails before any write
    mode = os.stat(path).st_mode & 0o777
    tmp = leftover(path)
    remove_leftover(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # as private (or group-readable) as the journal it replaces
        _write_all(fd, HEADER + b"".join(frames[:1]))
        hook("compact-write")  # the new file is incomplete
        _write_all(fd, b"".join(frames[1:]))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        remove_leftover(path)
        raise
    os.close(fd)
    hook("compact-synced")  # the new file is whole and durable, the old one still in place
    if keep_as is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(keep_as)  # an earlier link of this same file (a compaction that died)
        os.link(path, keep_as)
    os.replace(tmp, path)
    hook("compact-renamed")  # renamed, the directory not synced yet
    fsync_parent(path)
