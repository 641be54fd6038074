"""A Slurm job's node side, as readers see it.

The node's supervisor (`corral slurm-job`) keeps the job's own journal under
ROOT/ID/slurm/JOB/SLURM_ID/ (one directory per attempt, named by its Slurm id), and, while it
runs, `live.json` with the CPU and memory of its runs (written by the node reporter). This
module finds the newest attempt and reads its process table from that journal, so `status`,
`read` and the observer show the node's runs (RUNNING, pid, host) while the job runs, not only
once it ended. Read-only: no lock is taken.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.core.records import Record
from corral.core.supervision import Supervision
from corral.core.task import Run
from corral.supervisor.layout import Layout

LIVE_FILE = "live.json"


@dataclass(frozen=True, slots=True)
class NodeView:
    """The newest attempt of a job on its node: its Slurm id, its host, its journal's fold."""

    ident: str
    host: str | None
    sup: Supervision
    records: list[Record]


def _order(path: Path) -> int:
    head = path.name.split("_")[0]
    return int(head) if head.isdigit() else -1


def attempts(task_dir: Path, job: int) -> list[Path]:
    """The node directories of `job`, oldest first (Slurm ids grow)."""
    base = task_dir / "slurm" / str(job)
    with contextlib.suppress(OSError):
        return sorted((d for d in base.iterdir() if d.is_dir() and (d / "journal").exists()), key=_order)
    return []


def read_node(task_dir: Path, job: int = 0, ident: str | None = None) -> NodeView | None:
    """The fold of the node journal of `job` (attempt `ident`, or the newest one); None while
    there is none or it cannot be read (the launcher's view stands)."""
    from corral.supervisor.session import replay  # session -> engine -> snapshot -> here

    found = attempts(task_dir, job)
    if ident is not None:
        found = [d for d in found if d.name == ident]
    if not found:
        return None
    where = found[-1]
    try:
        sup, records = replay(Layout(where.parent, where.name))
    except Exception:  # a torn or unreadable node journal: show what the launcher knows
        return None
    host = sup.supervisors[-1].host if sup.supervisors else None
    return NodeView(where.name, host, sup, records)


def process_rows(sup: Supervision) -> list[list[Any]]:
    """A task's process table as status.json holds it: [name, final, [[run, state, pid, exit,
    started, finished, reason], ...], dropped]."""
    rt = sup.jobs.get(0)
    if rt is None:
        return []
    procs = rt.processes.items()
    return [[name, p.spec.final, [_run_row(r) for r in p.runs], p.dropped] for name, p in procs]


def _run_row(r: Run) -> list[Any]:
    return [r.run, r.state.value, r.pid, r.exit_code, r.started_at or r.launched_at, r.finished_at, r.reason]


def live_resources(task_dir: Path, job: int, ident: str) -> dict[str, Any] | None:
    """What the node reporter last wrote for attempt `ident` of `job` (None: nothing yet)."""
    path = task_dir / "slurm" / str(job) / ident / LIVE_FILE
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
