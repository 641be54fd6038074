"""The tasks under a root and their views, cached by journal identity and size.

Listing 1,000 finished tasks costs one stat per journal and one read of /proc/locks: a view is
rebuilt only when its journal changed (inode, size or mtime), and then from an incremental fold.
"""

from __future__ import annotations

import fnmatch
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.journal import JournalError
from corral.observe import liveness
from corral.observe.folds import Fold, Folds, RunCounts
from corral.observe.views import view
from corral.supervisor.layout import Layout, list_ids, valid_id
from corral.supervisor.session import SessionError


class NoSuchTask(LookupError):
    pass


@dataclass
class Entry:
    key: tuple[int, int, int]  # journal (inode, size, mtime_ns)
    view: dict[str, Any]  # as built, "supervised" patched per request
    runs: RunCounts
    journal_bytes: int


def _unreadable(task_id: str, exc: Exception) -> dict[str, Any]:
    return {"id": task_id, "state": "UNREADABLE", "error": str(exc)}


class Catalog:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.folds = Folds(root)
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()

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

    def entry(self, task_id: str, held: set[tuple[int, int, int]] | None = None) -> Entry:
        layout = self.layout(task_id)
        try:
            st = os.stat(layout.journal, follow_symlinks=False)
        except OSError as exc:
            raise NoSuchTask(f"{task_id}: {exc.strerror}") from None
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        alive = liveness.supervised(layout.journal, liveness.held_flocks() if held is None else held)
        with self._lock:
            cached = self._entries.get(task_id)
        if cached is None or cached.key != key:
            cached = self._build(task_id, layout, key, alive)
            with self._lock:
                self._entries[task_id] = cached
        if cached.view.get("supervised", alive) != alive:
            cached.view = {**cached.view, "supervised": alive}
        return cached

    def _build(self, task_id: str, layout: Layout, key: tuple[int, int, int], alive: bool) -> Entry:
        try:
            fold = self.folds.get(task_id)
        except (OSError, JournalError, SessionError, ValueError) as exc:
            return Entry(key, _unreadable(task_id, exc), RunCounts(), key[1])
        with fold.lock:
            data = view(fold.sup, layout, alive)
            runs = RunCounts(fold.runs.started, fold.runs.failed, fold.runs.lost)
        return Entry(key, data, runs, key[1])

    def entries(self, pattern: str | None = None) -> list[Entry]:
        held = liveness.held_flocks()
        out = []
        for task_id in list_ids(self.root):
            if pattern and not (fnmatch.fnmatch(task_id, pattern) or task_id == pattern):
                continue
            try:
                out.append(self.entry(task_id, held))
            except NoSuchTask:
                continue  # removed (gc) between the listing and the stat
        with self._lock:  # forget tasks that are gone
            known = {e.view["id"] for e in out} if not pattern else None
            if known is not None:
                for gone in set(self._entries) - known:
                    del self._entries[gone]
        return out

    def views(self, pattern: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        views = [e.view for e in self.entries(pattern)]
        if state:
            views = [v for v in views if v["state"] == state]
        return views
