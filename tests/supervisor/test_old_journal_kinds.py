"""Journals written before `Opened.kind` was an enum (JournalKind) replay as they did: their
first record holds the kind as plain text, which the enum reads and writes byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from corral.core.records import Attached, JournalKind, Record, RunUpdate, Transition, encode
from corral.core.states import ENSEMBLE
from corral.journal import open_for_append
from corral.spec.model import Ensemble, JobTemplate, Process, Task
from corral.supervisor.layout import Layout
from corral.supervisor.session import replay


def old_opened(kind: str, task_id: str, spec: dict[str, object]) -> bytes:
    """An Opened record as earlier versions encoded it: tag, then the fields, kind as text."""
    return msgspec.msgpack.encode(["open", kind, task_id, spec, 1.0, "host", "boot", 1, {}])


def one_job_ran(job: int) -> list[Record]:
    return [
        Transition(job, "ACTIVE", 2.0),
        RunUpdate(job, "main", 0, "LAUNCHING", 2.0),
        RunUpdate(job, "main", 0, "SUCCESS", 3.0, exit_code=0),
        Transition(job, "SUCCESS", 3.0),
    ]


def write_journal(root: Path, task_id: str, opened: bytes, records: list[Record]) -> Layout:
    (root / task_id).mkdir(parents=True)
    writer, _ = open_for_append(root / task_id / "journal", create=True)
    writer.append_many(
        [opened, *(encode(r) for r in [Attached(os.getpid(), 1, 1.0, "host", "boot"), *records])]
    )
    writer.close()
    return Layout(root, task_id)


def test_an_old_task_journal_replays(corral) -> None:  # type: ignore[no-untyped-def]
    task = Task(name="t", processes=(Process(name="main", argv=("true",)),))
    opened = old_opened("task", "old-t", msgspec.to_builtins(task))
    layout = write_journal(corral.root, "old-t", opened, one_job_ran(0))
    sup, records = replay(layout)
    assert sup.kind is JournalKind.TASK and sup.state.value == "SUCCESS"
    assert encode(records[0]) == opened  # read and written again: the same bytes
    view = corral.status("old-t")
    assert (view["kind"], view["state"]) == ("task", "SUCCESS")


def test_an_old_ensemble_journal_replays(corral) -> None:  # type: ignore[no-untyped-def]
    ens = Ensemble(name="e", job=JobTemplate(cmd="true"), params={"i": [0, 1]})
    opened = old_opened("ensemble", "old-e", msgspec.to_builtins(ens))
    ends = [Transition(ENSEMBLE, "ACTIVE", 1.5), *one_job_ran(0), *one_job_ran(1)]
    layout = write_journal(corral.root, "old-e", opened, [*ends, Transition(ENSEMBLE, "SUCCESS", 4.0)])
    sup, records = replay(layout)
    assert sup.kind is JournalKind.ENSEMBLE and sup.state.value == "SUCCESS"
    assert encode(records[0]) == opened
    view = corral.status("old-e")
    assert (view["kind"], view["state"], view["jobs"]["succeeded"]) == ("ensemble", "SUCCESS", 2)
