"""status.json: an ensemble's job counts as of a journal size, so that `status` of a
100,000-job ensemble needs no replay. A cache only: readers check it against the journal."""

from __future__ import annotations

import contextlib
import json
import os

from corral.core.supervision import Supervision
from corral.supervisor.layout import Layout

SNAPSHOT_INTERVAL = 1.0


def write_snapshot(layout: Layout, sup: Supervision, journal_size: int, now: float) -> None:
    data = {
        "id": sup.id,
        "kind": sup.kind,
        "state": sup.state.value,
        "started_at": sup.started_at,
        "finished_at": sup.finished_at,
        "total": sup.total,
        "counts": {state.value: n for state, n in sup.counts.items()},
        "halted": sup.halted,
        "supervisor_pid": os.getpid(),
        "journal_size": journal_size,
        "updated_at": now,
    }
    tmp = layout.status_snapshot.with_suffix(".tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps(data))
        os.replace(tmp, layout.status_snapshot)


class Snapshots:
    """Writes the snapshot at most every SNAPSHOT_INTERVAL (ensembles only)."""

    def __init__(self, layout: Layout, enabled: bool) -> None:
        self.layout = layout
        self.enabled = enabled
        self.at = 0.0

    def maybe(self, sup: Supervision, journal_size: int, now: float, *, force: bool = False) -> None:
        if self.enabled and (force or now - self.at >= SNAPSHOT_INTERVAL):
            self.at = now
            write_snapshot(self.layout, sup, journal_size, now)
