"""The JSON views of tasks and ensembles: what `corral status --json` prints and the API serves.

Built from a fold of the journal (a Supervision) or an ensemble's status.json snapshot. No I/O
beyond the snapshot read, no decisions: one place decides the shape both faces share.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from corral.core.records import JournalKind
from corral.core.states import TaskState
from corral.core.supervision import NO_EXIT, STATE_OF_CODE, Supervision
from corral.core.task import TaskRuntime
from corral.supervisor.layout import Layout
from corral.supervisor.replaying import paused_gc
from corral.supervisor.snapshot import node_processes
from corral.supervisor.stamps import journal_stamp, unseal

RUNNING_STATES = (TaskState.ACTIVE, TaskState.CLEANING, TaskState.FINALIZING, TaskState.SUBMITTED)


_ZONES: dict[int, timezone] = {}  # UTC offset in seconds -> its zone


def iso(at: float | None) -> str | None:
    """Local time with its UTC offset, to the millisecond. The same text as
    `datetime.fromtimestamp(at).astimezone().isoformat(timespec="milliseconds")`, a third
    cheaper (one zone object per offset): `status` of 10,000 tasks formats 40,000 of them."""
    if at is None:
        return None
    offset = time.localtime(at).tm_gmtoff
    zone = _ZONES.get(offset)
    if zone is None:
        zone = _ZONES[offset] = timezone(timedelta(seconds=offset))
    return datetime.fromtimestamp(at, zone).isoformat(timespec="milliseconds")


def processes(rt: TaskRuntime) -> list[dict[str, Any]]:
    out = []
    for name, p in rt.processes.items():
        out.append(
            {
                "name": name,
                "final": p.spec.final,
                "runs": [
                    {
                        "run": r.run,
                        "state": r.state.value,
                        "pid": r.pid or None,
                        "exit_code": r.exit_code,
                        "started_at": iso(r.started_at or r.launched_at),
                        "finished_at": iso(r.finished_at),
                        "reason": r.reason or None,
                    }
                    for r in p.runs
                ],
                "runs_dropped": p.dropped,
            }
        )
    return out


def job_counts(sup: Supervision) -> dict[str, int]:
    counts = {s.value.lower(): n for s, n in sup.counts.items()}
    return {
        "total": sup.total,
        "pending": counts["pending"],
        "running": sum(sup.counts[s] for s in RUNNING_STATES),
        "succeeded": counts["success"],
        "failed": counts["failed"],
        "killed": counts["killed"],
        "lost": counts["lost"],
    }


def view(
    sup: Supervision, layout: Layout, supervised: bool, jobs: bool = False, job_state: str | None = None
) -> dict[str, Any]:
    opened = sup.opened
    data: dict[str, Any] = {
        "id": sup.id,
        "kind": sup.kind,
        "name": opened.spec.get("name") if opened else None,
        "state": sup.state.value,
        "started_at": iso(sup.started_at),
        "finished_at": iso(sup.finished_at),
        "supervised": supervised,
        "supervisor_pid": sup.supervisors[-1].pid if sup.supervisors else None,
        "sandbox": str(layout.sandbox) if sup.kind == JournalKind.TASK else str(layout.dir / "jobs"),
        "ports": (opened.context.get("ports", {}) if opened else {}),
        "dir": str(layout.dir),
    }
    if sup.kind == JournalKind.TASK:
        rt = sup.jobs.get(0)
        data["processes"] = processes(rt) if rt is not None else []
        node = node_processes(layout) if sup.remote else None
        if node is not None:  # a Slurm task's runs are in its node's journal, not this one
            data["processes"] = _snapshot_processes(node[0], node[1])
    else:
        data["jobs"] = job_counts(sup)
        data["halted"] = sup.halted.value or None
        if jobs:
            _, data["job_list"] = job_page(sup, job_state, 0, None)
    return data


def job_page(
    sup: Supervision, job_state: str | None, offset: int, limit: int | None
) -> tuple[int, list[dict[str, Any]]]:
    """(jobs matching job_state, the rows of [offset, offset+limit) of them). Only the page's
    rows are built: a 100,000-job ensemble's page costs its rows, plus a scan of the job states
    when filtered. RUNNING means holding a slot (ACTIVE, CLEANING, FINALIZING, SUBMITTED)."""
    wanted = job_state.upper() if job_state else None
    matching: Sequence[int]
    if wanted is None:
        matching = range(sup.total)
    elif wanted == "RUNNING":
        matching = sorted(sup.live)
    else:
        code = STATE_OF_CODE.index(TaskState(wanted))
        matching = [j for j, c in enumerate(sup.states[: sup.total]) if c == code]
    end = len(matching) if limit is None else offset + limit
    page = matching[offset:end]
    # the rows hold no cycles: the collector would only walk 100,000 fresh dicts over and
    # over while they are built (a third of the time of `status --jobs` of 100,000 jobs)
    with paused_gc():
        return len(matching), _job_rows(sup, page)


_PENDING = STATE_OF_CODE.index(TaskState.PENDING)


def _job_rows(sup: Supervision, page: Sequence[int]) -> list[dict[str, Any]]:
    """The rows of these jobs, from the job table's arrays in bulk (status --jobs lists
    100,000 of them: one comprehension, no object per job but its row)."""
    states: Sequence[int]
    attempts: Sequence[int]
    codes: Sequence[int]
    if isinstance(page, range) and page.step == 1:
        states = sup.states[page.start : page.stop]
        attempts = sup.attempts[page.start : page.stop]
        codes = sup.exit_codes[page.start : page.stop]
        params = sup.params_between(page.start, page.stop)
    else:
        states = [sup.states[j] for j in page]
        attempts = [sup.attempts[j] for j in page]
        codes = [sup.exit_codes[j] for j in page]
        params = map(sup.params_of, page)
    names = [state.value for state in STATE_OF_CODE]
    return [
        {
            "job": job,
            "state": names[state],
            "attempts": attempt + 1 if state != _PENDING or attempt else 0,
            "exit_code": None if code == NO_EXIT else code,
            "params": param,
        }
        for job, state, attempt, code, param in zip(page, states, attempts, codes, params, strict=True)
    ]


def _task_snapshot_view(snap: dict[str, Any], folder: str, supervised: bool) -> dict[str, Any] | None:
    """A finished task's view from the status.json its supervisor wrote at the end: the same
    shape as view() (tests/scenarios/test_readers.py compares them)."""
    if "processes" not in snap:
        return None  # written by an older corral: replay
    return {
        "id": snap["id"],
        "kind": JournalKind.TASK.value,
        "name": snap["name"],
        "state": snap["state"],
        "started_at": iso(snap.get("started_at")),
        "finished_at": iso(snap.get("finished_at")),
        "supervised": supervised,
        "supervisor_pid": snap.get("supervisor_pid"),
        "sandbox": folder + "/sandbox",
        "ports": snap.get("ports") or {},
        "dir": folder,
        "processes": _snapshot_processes(snap["processes"], snap.get("host")),
    }


def _snapshot_processes(rows: list[Any], host: str | None = None) -> list[dict[str, Any]]:
    """The process table of a status.json ([name, final, runs, dropped]; older ones have no
    dropped) in the shape of processes(); `host`: where the runs are (a Slurm task's node),
    shown with each run."""
    return [
        {
            "name": name,
            "final": final,
            "runs": [
                {
                    "run": run,
                    "state": state,
                    "pid": pid or None,
                    "exit_code": code,
                    "started_at": iso(started),
                    "finished_at": iso(finished),
                    "reason": reason or None,
                    **({"host": host} if host else {}),
                }
                for run, state, pid, code, started, finished, reason in runs
            ],
            "runs_dropped": dropped[0] if dropped else 0,
        }
        for name, final, runs, *dropped in rows
    ]


def _read_small(path: str) -> bytes:
    """A small file's bytes without a buffered file object (status of a root of 10,000 tasks
    reads 10,000 of them)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = [os.read(fd, 1 << 16)]
        while chunks[-1]:
            chunks.append(os.read(fd, 1 << 16))
    finally:
        os.close(fd)
    return b"".join(chunks)


def snapshot_view(layout: Layout, supervised: bool) -> dict[str, Any] | None:
    """A view from status.json, when that is current (a task's: once it ended); None means
    replay. Current: sealed (its crc holds), this task's, and stamped with the journal as it
    is now (stamps.py) - or, for a live ensemble's supervisor, written in the last seconds of
    a prefix of the journal. A status.json that is anything else is never believed."""
    folder = f"{os.fspath(layout.root)}/{layout.id}"  # no pathlib: once per task of a root
    try:
        snap = unseal(_read_small(folder + "/status.json"))
        st = os.stat(folder + "/journal")
    except OSError:
        return None
    if snap is None or snap.get("id") != layout.id:
        return None
    try:
        return _snapshot_view(snap, st, folder, layout, supervised)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        return None  # sealed, yet not of the shape we write: replay


def _snapshot_view(
    snap: dict[str, Any], st: os.stat_result, folder: str, layout: Layout, supervised: bool
) -> dict[str, Any] | None:
    exact = snap.get("journal") == journal_stamp(st)
    written = snap["journal_size"]
    fresh = (
        supervised
        and isinstance(written, int)
        and written <= st.st_size
        and time.time() - float(snap.get("updated_at", 0)) < 5.0
    )
    if snap.get("kind") == JournalKind.TASK:
        return _task_snapshot_view(snap, folder, supervised) if exact else None
    if not (exact or fresh):
        return None
    c = {k.lower(): v for k, v in snap["counts"].items()}
    running = c.get("active", 0) + c.get("cleaning", 0) + c.get("finalizing", 0) + c.get("submitted", 0)
    return {
        "id": snap["id"],
        "kind": snap["kind"],
        "name": snap.get("name"),
        "state": snap["state"],
        "started_at": iso(snap.get("started_at")),
        "finished_at": iso(snap.get("finished_at")),
        "supervised": supervised,
        "supervisor_pid": snap.get("supervisor_pid"),
        "dir": str(layout.dir),
        "sandbox": str(layout.dir / "jobs"),
        "ports": {},
        "jobs": {
            "total": snap["total"],
            "pending": c.get("pending", 0),
            "running": running,
            "succeeded": c.get("success", 0),
            "failed": c.get("failed", 0),
            "killed": c.get("killed", 0),
            "lost": c.get("lost", 0),
        },
        "halted": snap.get("halted") or None,
        "as_of": iso(snap.get("updated_at")),
    }
