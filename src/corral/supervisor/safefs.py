"""Creating a task's directories and files: private to the owner, never through a symlink.

A task directory (ROOT/ID) is 0700 and its files 0600, whatever the umask: the journal holds
the spec with its `env:` values, and a readable lock file would let any user hold a shared
flock on it and block the owner's `kill` and `recover`. `--group-readable` makes the directory
0750 and its files 0640 (the lock stays 0600: only the owner may ever hold it). The directory's
own mode is the record of that choice: every later writer (recover, the reaper) reads it back.

Nothing is created through a symlink: a directory we create or reuse must be a real directory
owned by us (then nobody else can plant a link inside it), and files are opened O_NOFOLLOW.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from corral.errors import UserError

PRIVATE_DIR, SHARED_DIR = 0o700, 0o750
PRIVATE_FILE, SHARED_FILE = 0o600, 0o640
CREATE = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(UserError):
    """A path corral will not write through (a symlink, another user's directory)."""


def make_dir(path: Path | str, mode: int | None = None) -> None:
    """Create `path` (its parent must exist) or check the one there: a real directory of ours.

    `mode` (0700 or 0750) is applied even to an existing directory: the caller is starting
    something new there. None keeps an existing directory's mode (recover, a job's logs).
    """
    path = _strip(path)
    try:
        os.mkdir(path, PRIVATE_DIR if mode is None else mode)
    except FileExistsError:
        check_dir(path)
    if mode is not None:
        os.chmod(path, mode, follow_symlinks=False)  # the umask may have taken the group bits


def _strip(path: Path | str) -> str:
    # lstat("link/") follows the link: never look at a path with a trailing slash
    return os.fspath(path).rstrip("/") or "/"


def check_dir(path: Path | str) -> os.stat_result:
    path = _strip(path)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(f"{path}: is a symbolic link; corral never writes through one (remove it)")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePath(f"{path}: is not a directory (remove it)")
    if st.st_uid != os.geteuid():
        raise UnsafePath(f"{path}: belongs to uid {st.st_uid}, not to you; choose another --id")
    return st


def make_task_dir(task_dir: Path, *, group: bool | None) -> None:
    """ROOT/ID: the root is made like `mkdir -p` (it may be shared), the task directory
    private (group=False), group-readable (True), or as it already is (None: recover)."""
    task_dir.parent.mkdir(parents=True, exist_ok=True)
    mode = None if group is None else (SHARED_DIR if group else PRIVATE_DIR)
    make_dir(task_dir, mode)


def make_subdir(path: Path | str, task_dir: Path | str) -> None:
    """A directory inside the task's (logs, jobs): as private as the task directory."""
    shared = file_mode(task_dir) == SHARED_FILE
    make_dir(path, SHARED_DIR if shared else PRIVATE_DIR)


def file_mode(task_dir: Path | str) -> int:
    """The mode of files created in a task directory: 0640 if the task is shared, else 0600."""
    shared = os.stat(task_dir).st_mode & 0o050 == 0o050
    return SHARED_FILE if shared else PRIVATE_FILE


def open_new(path: Path | str, flags: int, mode: int) -> int:
    """os.open(..., O_CREAT) that refuses a symlink in the last component and gives the file
    exactly `mode` when it creates it (the umask cannot widen it, but may narrow 0640)."""
    fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    if mode & 0o070:
        with contextlib.suppress(OSError):  # not ours to change (another user's file): keep it
            os.fchmod(fd, mode)
    return fd


def write_file(path: Path | str, data: bytes, mode: int) -> None:
    """Write a whole new file (truncating an old one) without following a symlink."""
    fd = open_new(path, os.O_WRONLY | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
