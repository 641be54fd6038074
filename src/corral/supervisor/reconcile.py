"""Recovery: match every run the journal believes live against the machine and the ledger.

A new supervisor re-attaches to runs still alive (through a pidfd), takes the exit status of
runs that ended meanwhile from their reaper's ledger, and marks LOST only what cannot be known.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from corral.core.records import Record, RunUpdate
from corral.core.states import RunState
from corral.core.supervision import Supervision
from corral.supervisor import proc
from corral.supervisor.environment import RunEnvironment
from corral.supervisor.launcher import Launcher
from corral.supervisor.layout import Layout
from corral.supervisor.spawn import Ledger


def reconcile(
    sup: Supervision,
    layout: Layout,
    env: RunEnvironment,
    launcher: Launcher,
    record: Callable[[Record], None],
) -> dict[str, int]:
    """Match every run the journal believes live against the machine and the reapers' ledger."""
    same_boot = not sup.supervisors or sup.supervisors[0].boot_id == proc.boot_id()
    same_boot = same_boot and (sup.opened is None or sup.opened.boot_id == proc.boot_id())
    counts = {"attached": 0, "recovered": 0, "lost": 0}
    now = time.time()
    live = [(job, run) for job in sorted(sup.live) for run in sup.jobs[job].live_runs()]
    ledger = Ledger(str(layout.reaper_log), wanted={(job, run.process, run.run) for job, run in live})
    ledger.refresh()
    if same_boot and any(
        run.pid == 0 and ledger.spawn_of((job, run.process, run.run), run.launched_at) is None
        for job, run in live
    ):
        ledger.settle()  # a launch its predecessor asked for may still be under way
    launcher.use_ledger(ledger)  # re-attached runs' ends are read from it too
    for job, run in live:
        key = (job, run.process, run.run)
        pid, ticks = run.pid, run.start_ticks
        if same_boot and pid == 0:
            # launched, but the pid never reached the journal: the ledger has it, or else the
            # environment marks every run carries find it
            spawned = ledger.spawn_of(key, run.launched_at)
            if spawned is not None:
                pid, ticks, _ = spawned
            else:
                found = proc.find_marked(env.needles(*key))
                leaders = [p for p in found if _is_leader(p)]
                if leaders:
                    pid = leaders[0]
                    ticks = proc.start_ticks(pid) or 0
            if pid:
                record(
                    RunUpdate(
                        *key, RunState.RUNNING.value, now, pid=pid, start_ticks=ticks, reason="re-attached"
                    )
                )
        if same_boot and pid and proc.alive(pid, ticks) and launcher.adopt(key, pid, ticks):
            counts["attached"] += 1
            continue
        status = ledger.end_of(key, run.launched_at) if same_boot else None
        failure = ledger.failure_of(key, run.launched_at) if same_boot else None
        if status is None and failure is not None:
            record(RunUpdate(*key, RunState.FAILED.value, now, reason=failure))
            counts["recovered"] += 1
            continue
        if status is None and same_boot and pid:
            status = ledger.status(key, run.launched_at)  # its reaper may not have written it yet
        # the real stop time, when the ledger has it: not the moment we learned of it
        at = (ledger.ended_at(key, run.launched_at) or now) if status is not None else now
        state = launcher.end_run(key, status, at, recovered=True)
        counts["lost" if state is RunState.LOST else "recovered"] += 1
    return counts


def _is_leader(pid: int) -> bool:
    try:
        return os.getsid(pid) == pid
    except OSError:
        return False
