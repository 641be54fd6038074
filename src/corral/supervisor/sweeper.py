"""Killing what ended jobs' runs left behind (daemonized grandchildren).

Marks (the CORRAL_* environment) find the leftovers of one job; a leftover that cleared its
environment is found by the process tree instead: it is re-parented to us, and killed when
the supervision ends (KILLED, SUCCESS, LOST...), since it cannot be told which job it came from.
The /proc scan is skipped when nothing can have escaped: no orphan was re-parented to us
(we are a subreaper), no run of the job was signalled, none was re-attached. Jobs none of
whose runs was signalled wait up to SWEEP_INTERVAL, so that one look at our children serves
every job that ended meanwhile.
"""

from __future__ import annotations

from corral.core.task import SIGKILL
from corral.supervisor import proc
from corral.supervisor.launcher import Launcher


def _kill_escapees(orphans: list[int]) -> None:
    """At the end of supervision (or a lose): every child of ours that is not a run or the
    reaper is a descendant of one of our runs re-parented to us (we are a subreaper), even one
    that cleared its environment (no marks to find it by) and left its session. It dies with
    the task, and so do its own children, which would otherwise go to init once we exit."""
    victims = list(orphans)
    for pid in orphans:
        victims += proc.descendants(pid)
    proc.signal_pids(victims, SIGKILL)


SWEEP_INTERVAL = 0.05  # seconds an ended job may wait for the look for its leftovers


class Sweeper:
    def __init__(self, launcher: Launcher) -> None:
        self.launcher = launcher
        self._due: list[int] = []  # ended jobs whose leftovers wait a look
        self.at: float | None = None  # when they get it

    def sweep(self, jobs: list[tuple[int, bool]], now: float | None = None) -> None:
        """Jobs (job, whether a run of it was signalled) that ended; without `now`, nothing
        waits (the end of supervision, a lose)."""
        due = [(job, True) for job, signalled in jobs if signalled]
        self._due += [job for job, signalled in jobs if not signalled]
        if self._due:
            if now is None or (self.at is not None and now >= self.at):
                due += [(job, False) for job in self._due]
                self._due, self.at = [], None
            elif self.at is None:
                self.at = now + SWEEP_INTERVAL
        ours = self.launcher.our_pids()
        orphans = [p for p in proc.children_of_self() if p not in ours]
        if now is None and orphans:
            _kill_escapees(orphans)
            orphans = []
        if not due:
            return
        for job, signalled in due:
            if orphans or signalled or self.launcher.adopted:
                proc.signal_pids(proc.find_marked(self.launcher.env.needles(job)), SIGKILL)
