"""Garbage collection: remove what finished tasks and ensembles left, oldest first.

What it promises:
- it never touches a task that has not finished, or that a live supervisor holds: it takes the
  journal's writer lock (non-blocking) for the whole removal and checks the state again under
  it, so nobody can recover, retry or kill the task meanwhile;
- a gc killed at any instant leaves every task whole or gone. A task directory (or, with
  `what` = logs / sandbox, each part of it) is first renamed, atomically and within its own
  directory, to a hidden trash name (`.gc-...`), and the rename is made durable (directory
  fsync) before the tree is deleted. Readers list only valid ids, which never start with '.',
  so they never see a half-deleted tree; the next gc deletes leftover trash.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import signal
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from corral.core.states import TASK_TERMINAL, TaskState
from corral.journal import JournalError
from corral.supervisor.layout import Layout, list_ids

TRASH_PREFIX = ".gc-"
WHAT = ("all", "logs", "sandbox", "history")


@dataclass(frozen=True, slots=True)
class Conditions:
    """What may go. Given conditions are goals; gc removes, oldest first, until all hold."""

    older_than: float | None = None  # seconds since the end
    keep: int | None = None  # finished tasks to keep (the newest)
    max_space: int | None = None  # bytes the matching tasks may use in all
    states: frozenset[TaskState] = TASK_TERMINAL  # only tasks that ended in one of these
    what: str = "all"  # all | logs | sandbox | history

    @property
    def any_goal(self) -> bool:
        return self.older_than is not None or self.keep is not None or self.max_space is not None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A finished task or ensemble and the bytes removing `what` of it frees."""

    id: str
    kind: str
    state: TaskState
    finished_at: float
    size: int  # bytes the removal frees (allocated blocks, like du)


@dataclass(frozen=True, slots=True)
class Survey:
    candidates: list[Candidate]  # finished, in a wanted state, with something to free; oldest first
    total_space: int  # bytes used by every matching task, finished or not


def disk_usage(path: Path) -> int:
    """Allocated bytes under `path`, symlinks not followed (a link costs its own inode only)."""
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    total = st.st_blocks * 512
    if not stat.S_ISDIR(st.st_mode):
        return total
    stack = [os.fspath(path)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                est = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            total += est.st_blocks * 512
            if stat.S_ISDIR(est.st_mode):
                stack.append(entry.path)
    return total


def parts(layout: Layout, what: str) -> list[Path]:
    """The paths inside a task directory that `what` removes (never anything outside it).

    logs: every run's output and the supervisor's log; sandbox: the task's working directory
    and an ensemble's job directories; history: the old journals a compaction kept
    (`journal.keep_history`). All keep the journal, so `status` and `read` still answer. A
    custom `sandbox:` outside ROOT/ID is the user's, never ours to delete.
    """
    if what == "logs":
        names = ["logs", "supervisor.log"]
    elif what == "sandbox":
        names = ["sandbox", "jobs"]
    elif what == "history":
        names = ["history"]
    else:
        raise ValueError(what)
    return [layout.dir / n for n in names if os.path.lexists(layout.dir / n)]


def survey(root: Path, ids: Iterable[str], conditions: Conditions) -> Survey:
    """Read every matching task once: what it is, whether it ended, how much it holds."""
    from corral.supervisor.checkpoints import fold_journal
    from corral.supervisor.session import SessionError

    found: list[Candidate] = []
    total = 0
    for task_id in ids:
        layout = Layout(root, task_id)
        if os.path.islink(layout.dir):
            continue  # not a directory of ours: the link may point anywhere
        whole = disk_usage(layout.dir)
        total += whole
        try:
            sup = fold_journal(layout)
        except (JournalError, SessionError, OSError, ValueError):
            continue  # unreadable or vanished: not known to be finished, so not ours to remove
        if not sup.terminal or sup.state not in conditions.states:
            continue
        if conditions.what == "all":
            size = whole
        else:
            size = sum(disk_usage(p) for p in parts(layout, conditions.what))
            if not parts(layout, conditions.what):
                continue  # already collected
        found.append(Candidate(task_id, sup.kind, sup.state, sup.finished_at or 0.0, size))
    found.sort(key=lambda c: (c.finished_at, c.id))
    return Survey(found, total)


def select(survey: Survey, conditions: Conditions, now: float) -> list[Candidate]:
    """The candidates to remove, oldest first: pure, so every condition is tested alone.

    No goal given: everything that matched. Otherwise the union of what each goal needs:
    every task older than `older_than`; all but the newest `keep`; then the oldest of the rest
    until the matching tasks fit in `max_space`.
    """
    finished = survey.candidates
    if not conditions.any_goal:
        return list(finished)
    chosen: set[str] = set()
    if conditions.older_than is not None:
        chosen.update(c.id for c in finished if now - c.finished_at > conditions.older_than)
    if conditions.keep is not None:
        chosen.update(c.id for c in finished[: max(0, len(finished) - conditions.keep)])
    if conditions.max_space is not None:
        space = survey.total_space - sum(c.size for c in finished if c.id in chosen)
        for c in finished:
            if space <= conditions.max_space:
                break
            if c.id not in chosen:
                chosen.add(c.id)
                space -= c.size
    return [c for c in finished if c.id in chosen]


class Crash:
    """Fault injection for the tests: CORRAL_CRASH=gc-POINT:N dies at the Nth such point."""

    def __init__(self) -> None:
        name, _, count = os.environ.get("CORRAL_CRASH", "").partition(":")
        self.name = name
        self.left = int(count or 1) if name.startswith("gc-") else 0

    def point(self, name: str) -> None:
        if self.left and name == self.name:
            self.left -= 1
            if self.left == 0:
                os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _trash_name(name: str) -> str:
    return f"{TRASH_PREFIX}{name}-{secrets.token_hex(4)}"


@contextlib.contextmanager
def _writer_lock(layout: Layout):  # type: ignore[no-untyped-def]
    """Yield True holding the journal's writer lock, False if a supervisor holds it.

    The pid is not written into the lock file: `recover --force` SIGKILLs the pid it finds
    there, and gc is not a supervisor to be stopped (it lets go within one task's removal).
    """
    path = os.fspath(layout.journal) + ".lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        yield False  # vanished, or a symlink planted where the lock goes
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the flock


def _still_finished(layout: Layout, conditions: Conditions) -> bool:
    from corral.supervisor.checkpoints import fold_journal
    from corral.supervisor.session import SessionError

    try:
        sup = fold_journal(layout)
    except (JournalError, SessionError, OSError, ValueError):
        return False
    return sup.terminal and sup.state in conditions.states


def remove(root: Path, candidate: Candidate, conditions: Conditions, crash: Crash) -> str | None:
    """Remove one candidate; None when done, else why it was skipped."""
    layout = Layout(root, candidate.id)
    trash: list[Path] = []
    with _writer_lock(layout) as locked:
        if not locked:
            return "supervised"
        if not _still_finished(layout, conditions):
            return "no longer finished"
        crash.point("gc-locked")
        if conditions.what == "all":
            target = root / _trash_name(candidate.id)
            os.rename(layout.dir, target)
            trash.append(target)
            _fsync_dir(root)
        else:
            for part in parts(layout, conditions.what):
                target = layout.dir / _trash_name(part.name)
                os.rename(part, target)
                trash.append(target)
            _fsync_dir(layout.dir)
    crash.point("gc-renamed")
    for path in trash:
        delete_tree(path, crash)
    return None


def delete_tree(path: Path, crash: Crash | None = None) -> None:
    """Delete a trash tree, also where a job left directories without write permission."""

    def retry(func, p, _exc):  # type: ignore[no-untyped-def]
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o700)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
                shutil.rmtree(p, ignore_errors=True)
            else:
                func(p)

    if crash is not None:
        crash.point("gc-deleting")
    if os.path.islink(path) or not os.path.isdir(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    shutil.rmtree(path, onerror=retry)


def clean_trash(root: Path) -> int:
    """Delete what an interrupted gc left: ROOT/.gc-* and ROOT/ID/.gc-*. Returns how many."""
    found: list[Path] = []
    with contextlib.suppress(OSError):
        found += [root / n for n in os.listdir(root) if n.startswith(TRASH_PREFIX)]
    for task_id in list_ids(root):
        with contextlib.suppress(OSError):
            found += [root / task_id / n for n in os.listdir(root / task_id) if n.startswith(TRASH_PREFIX)]
    for path in found:
        delete_tree(path)
    return len(found)
