"""status.json: an ensemble's job counts as of a journal size, so that `status` of a
100,000-job ensemble needs no replay. A cache only: sealed with a crc and stamped with the
journal it was made from (stamps.py); readers check both against the journal."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from corral.core.records import JournalKind
from corral.core.supervision import Supervision
from corral.supervisor import safefs
from corral.supervisor.layout import Layout
from corral.supervisor.nodes import process_rows, read_node
from corral.supervisor.stamps import journal_stamp, seal

SNAPSHOT_INTERVAL = 1.0


def write_snapshot(layout: Layout, sup: Supervision, journal_size: int, now: float) -> None:
    data: dict[str, object] = {
        "id": sup.id,
        "kind": sup.kind,
        "name": sup.opened.spec.get("name") if sup.opened else None,
        "state": sup.state.value,
        "started_at": sup.started_at,
        "finished_at": sup.finished_at,
        "total": sup.total,
        "counts": {state.value: n for state, n in sup.counts.items()},
        "halted": sup.halted.value,
        "supervisor_pid": os.getpid(),
        "journal_size": journal_size,
        "journal": _stamp(layout, journal_size),
        "updated_at": now,
    }
    if sup.kind == JournalKind.TASK:
        data.update(_task_detail(sup))
        node = node_processes(layout) if sup.remote else None
        if node is not None:  # a Slurm task's runs are in its node's journal, not this one
            data["processes"], data["host"] = node
    tmp = layout.status_snapshot.with_suffix(".tmp")
    with contextlib.suppress(OSError):
        safefs.write_file(tmp, seal(data), safefs.file_mode(layout.dir))
        os.replace(tmp, layout.status_snapshot)


def _stamp(layout: Layout, journal_size: int) -> list[int] | None:
    """The journal's stamp, if the file holds exactly the `journal_size` bytes folded."""
    try:
        st = os.stat(layout.journal)
    except OSError:
        return None
    return journal_stamp(st) if st.st_size == journal_size else None


def node_processes(layout: Layout) -> tuple[list[list[Any]], str | None] | None:
    """A Slurm task's process table and the node's host, from the journal its node's
    supervisor writes (ROOT/ID/slurm/0/SLURM_ID/, the newest attempt): live while it runs.
    None while there is none."""
    node = read_node(layout.dir, 0)
    return (process_rows(node.sup), node.host) if node is not None else None


def _task_detail(sup: Supervision) -> dict[str, object]:
    """What `status` shows of a task beyond its state: written once, when the task ends, so
    that `status` of a root of 10,000 finished tasks reads 10,000 small files, no journal."""
    opened = sup.opened
    return {
        "name": opened.spec.get("name") if opened else None,
        "ports": opened.context.get("ports", {}) if opened else {},
        "supervisor_pid": sup.supervisors[-1].pid if sup.supervisors else None,
        "processes": process_rows(sup),
    }


class Snapshots:
    """Writes the snapshot at most every SNAPSHOT_INTERVAL (ensembles), and once when a task
    or an ensemble ends (`force`)."""

    def __init__(self, layout: Layout, enabled: bool) -> None:
        self.layout = layout
        self.enabled = enabled
        self.at = 0.0

    def maybe(self, sup: Supervision, journal_size: int, now: float, *, force: bool = False) -> None:
        if (self.enabled and (force or now - self.at >= SNAPSHOT_INTERVAL)) or (force and sup.terminal):
            self.at = now
            write_snapshot(self.layout, sup, journal_size, now)
