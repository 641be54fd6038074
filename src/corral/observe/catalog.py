"""The tasks under a root and their views, cached by journal identity and size.

Listing 1,000 finished tasks costs one scandir and one stat per journal, one read of
/proc/locks, and joining 1,000 JSON documents already encoded: a view is rebuilt (from an
incremental fold) only when its journal changed (inode, size or mtime), and re-encoded only
then or when its supervisor comes or goes.
"""

from __future__ import annotations

import fnmatch
import gzip
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from corral.journal import JournalCorrupt, JournalError, RecordRejected
from corral.journal.writer import lock_path
from corral.observe import liveness
from corral.observe.folds import Fold, Folds, RunCounts
from corral.observe.views import view
from corral.supervisor.layout import Layout, valid_id
from corral.supervisor.session import SessionError

Held = set[tuple[int, int, int]]
LIST_MAX_AGE = 0.5  # seconds; the page refreshes every 2 s


class NoSuchTask(LookupError):
    pass


@dataclass
class Entry:
    key: tuple[int, int, int]  # journal (inode, size, mtime_ns)
    view: dict[str, Any]
    runs: RunCounts
    journal_bytes: int
    lock: tuple[int, int, int] | None  # (major, minor, inode) of journal.lock, as /proc/locks says
    encoded: bytes = b""

    def supervised(self, held: Held) -> bool:
        return self.lock is not None and self.lock in held

    def refresh(self, alive: bool) -> None:
        if not self.encoded or ("supervised" in self.view and self.view["supervised"] != alive):
            if "supervised" in self.view:
                self.view = {**self.view, "supervised": alive}
            self.encoded = msgspec.json.encode(self.view)


@dataclass(frozen=True)
class Listing:
    at: float  # time.monotonic() of the build
    body: bytes  # the JSON array
    gzipped: bytes


def _unreadable(task_id: str, exc: Exception) -> dict[str, Any]:
    # the same words as `corral status --json`: CORRUPT for damage, UNREADABLE for the rest
    state = "CORRUPT" if isinstance(exc, JournalCorrupt | RecordRejected) else "UNREADABLE"
    return {"id": task_id, "state": state, "error": str(exc)}


def _lock_identity(layout: Layout) -> tuple[int, int, int] | None:
    # the writer creates journal.lock once and never replaces it: its inode is stable
    try:
        st = os.stat(lock_path(layout.journal), follow_symlinks=False)
    except OSError:
        return None
    return (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)


class Catalog:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.folds = Folds(root)
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()
        self._lists: dict[tuple[str | None, str | None], Listing] = {}
        self._list_lock = threading.Lock()

    def layout(self, task_id: str) -> Layout:
        """The layout of an existing task; NoSuchTask for a bad id or a missing journal."""
        if not valid_id(task_id):
            raise NoSuchTask(f"{task_id!r}: not a valid task id")
        layout = Layout(self.root, task_id)
        if not os.path.isfile(layout.journal) or os.path.islink(layout.dir):
            raise NoSuchTask(f"{task_id}: no such task")
        return layout

    def fold(self, task_id: str) -> Fold:
        self.layout(task_id)
        return self.folds.get(task_id)

    def _journals(self) -> list[tuple[str, os.stat_result]]:
        """(id, stat of its journal) for every task directory; symlinks are not followed."""
        found = []
        try:
            with os.scandir(self.root) as entries:
                for d in entries:
                    if d.is_symlink() or not d.is_dir(follow_symlinks=False) or not valid_id(d.name):
                        continue
                    try:
                        st = os.stat(f"{d.path}/journal", follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISREG(st.st_mode):
                        found.append((d.name, st))
        except FileNotFoundError:
            return []
        found.sort(key=lambda item: item[0])
        return found

    def entry(self, task_id: str, held: Held | None = None, st: os.stat_result | None = None) -> Entry:
        layout = self.layout(task_id) if st is None else Layout(self.root, task_id)
        if st is None:
            try:
                st = os.stat(layout.journal, follow_symlinks=False)
            except OSError as exc:
                raise NoSuchTask(f"{task_id}: {exc.strerror}") from None
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        held = liveness.recent_flocks() if held is None else held
        with self._lock:
            cached = self._entries.get(task_id)
        if cached is None or cached.key != key:
            lock = _lock_identity(layout)
            cached = self._build(task_id, layout, key, lock is not None and lock in held, lock)
            with self._lock:
                self._entries[task_id] = cached
        elif cached.lock is None:  # not written by a supervisor yet: look again
            cached.lock = _lock_identity(layout)
        cached.refresh(cached.supervised(held))
        return cached

    def _build(
        self, task_id: str, layout: Layout, key: tuple[int, int, int], alive: bool, lock: Any
    ) -> Entry:
        try:
            fold = self.folds.get(task_id)
        except (OSError, JournalError, SessionError, ValueError) as exc:
            return Entry(key, _unreadable(task_id, exc), RunCounts(), key[1], lock)
        with fold.lock:
            data = view(fold.sup, layout, alive)
            runs = fold.runs
        return Entry(key, data, runs, key[1], lock)

    def entries(self, pattern: str | None = None) -> list[Entry]:
        held = liveness.recent_flocks()
        out = []
        for task_id, st in self._journals():
            if pattern and not (fnmatch.fnmatch(task_id, pattern) or task_id == pattern):
                continue
            out.append(self.entry(task_id, held, st))
        if not pattern:
            with self._lock:  # forget tasks that are gone (corral gc)
                for gone in set(self._entries) - {e.view["id"] for e in out}:
                    del self._entries[gone]
        return out

    def views(self, pattern: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        return [e.view for e in self.entries(pattern) if not state or e.view["state"] == state]

    def encoded_list(self, pattern: str | None = None, state: str | None = None) -> Listing:
        """The JSON array of views, joined from each view's cached encoding, and gzipped.

        A list is reused for LIST_MAX_AGE seconds, and while one request rebuilds it the others
        get the previous one (stale-while-revalidate): twenty clients polling 1,000 tasks cost
        two builds a second, not twenty, and none of them waits behind a build. It is gzipped
        once per build (1,000 views: ~700 KB of JSON, ~10x smaller), not once per client."""
        key = (pattern, state)
        listing = self._lists.get(key)
        if listing is not None and time.monotonic() - listing.at < LIST_MAX_AGE:
            return listing
        if not self._list_lock.acquire(blocking=listing is None):
            assert listing is not None
            return listing  # someone is rebuilding it
        try:
            listing = self._lists.get(key)
            if listing is not None and time.monotonic() - listing.at < LIST_MAX_AGE:
                return listing
            parts = [e.encoded for e in self.entries(pattern) if not state or e.view["state"] == state]
            body = b"[" + b",".join(parts) + b"]"
            listing = Listing(time.monotonic(), body, gzip.compress(body, compresslevel=1, mtime=0))
            if len(self._lists) > 64:
                self._lists.clear()
            self._lists[key] = listing
            return listing
        finally:
            self._list_lock.release()
