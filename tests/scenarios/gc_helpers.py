"""Finished (and unfinished) tasks written straight into a root, for gc tests: a real CLI run
costs ~0.3 s, and the gc tests need dozens of tasks with chosen end times."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from corral.core.records import Attached, Opened, RunUpdate, Transition, encode
from corral.journal import open_for_append
from corral.spec.model import Process, Task


def make_task(
    root: Path,
    task_id: str,
    *,
    state: str = "SUCCESS",
    finished_at: float = 1_000_000_000.0,
    files: int = 3,
    file_size: int = 4096,
) -> Path:
    """ROOT/ID with a journal that ended in `state` at `finished_at` (state ACTIVE: unfinished),
    logs, a sandbox of `files` files in nested directories, and a reaper ledger."""
    task = Task(name="t", processes=(Process(name="p", argv=("true",)),))
    d = root / task_id
    d.mkdir(parents=True)
    start = finished_at - 10
    records = [
        Opened("task", task_id, msgspec.to_builtins(task), start, "host", "boot"),
        Attached(os.getpid(), 1, start, "host", "boot"),
        Transition(0, "ACTIVE", start),
    ]
    if state != "ACTIVE":
        code = 0 if state == "SUCCESS" else 1
        run_state = state if state in ("SUCCESS", "FAILED", "KILLED", "LOST") else "FAILED"
        records += [
            RunUpdate(0, "p", 0, "LAUNCHING", start),
            RunUpdate(0, "p", 0, run_state, finished_at, exit_code=code),
            Transition(0, state, finished_at),
        ]
    writer, _ = open_for_append(d / "journal", create=True)
    writer.append_many(encode(r) for r in records)
    writer.close()
    (d / "logs").mkdir()
    (d / "logs" / "p.0.stdout").write_bytes(b"x" * file_size)
    (d / "logs" / "p.0.stderr").write_bytes(b"")
    (d / "reaper.log").write_text("S 0 p 0 1 1\n")
    for i in range(files):
        sub = d / "sandbox" / f"d{i % 7}" / f"e{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i}").write_bytes(b"y" * file_size)
    return d


def count_files(d: Path) -> int:
    return sum(len(files) + len(dirs) for _, dirs, files in os.walk(d))
