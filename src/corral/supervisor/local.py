"""The local backend: runs start on this host, through our reaper (the default backend).

It is the supervisor's own machinery behind the `Backend` interface (supervisor/backend.py):
the launcher (spawn, signal, reap, re-attached runs, log rotation), the sweeper (what ended
jobs left behind) and the recovery of runs (reconcile.py). No job is ever handed to a batch
system here: the core admits local jobs as ACTIVE and records each run LAUNCHING, so `submit`
and `cancel` have nothing to do (a kill is the core's signals to each run).

`command` is the one hook a variant changes: slurm-steps (backends/slurm_steps.py) starts each
run as a step of the Slurm allocation the supervisor runs in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from corral.core.records import Record
from corral.core.supervision import Supervision
from corral.core.task import SIGKILL
from corral.spec.model import Task
from corral.supervisor.backend import Backend, RunKey, Watch
from corral.supervisor.crash import CrashPoints
from corral.supervisor.environment import RunEnvironment
from corral.supervisor.launcher import Launcher
from corral.supervisor.layout import Layout
from corral.supervisor.loop import earliest
from corral.supervisor.reconcile import reconcile
from corral.supervisor.sweeper import Sweeper


class LocalBackend(Backend):
    def __init__(
        self,
        sup: Supervision,
        layout: Layout,
        env: RunEnvironment,
        record: Callable[[Record], None],
        clock: Callable[[], float],
        crash: CrashPoints,
        base_env: dict[str, str],
    ) -> None:
        self.sup = sup
        self.layout = layout
        self.env = env
        self.record = record
        self.clock = clock
        self.crash = crash
        self.launcher = Launcher(sup, env, record, clock, crash, base_env, command=self.command)
        self.sweeper = Sweeper(self.launcher)
        self._sweeps: list[tuple[int, bool]] = []  # jobs that ended this turn
        self._recovered = (0, 0)

    def command(self, argv: list[str], task: Task, process: str) -> list[str]:
        """The argv a run of `process` starts with (OSError: it cannot start)."""
        return argv

    # -- jobs: none is handed to a batch system here -------------------------------------------

    def submit(self, jobs: list[int]) -> None:
        """Never asked: local jobs are admitted ACTIVE, never SUBMITTED."""

    def cancel(self, jobs: list[int]) -> None:
        """Never asked: a kill is the core's signals to each run."""

    def due(self) -> float | None:
        return earliest(self.launcher.rotator.due(), self.launcher.mirror.due(), self.sweeper.at)

    def poll(self, now: float) -> None:
        """Our children that ended (the reaper, runs whose reaper died, orphans); log sizes and
        lines to copy to the console; the look for leftovers that ended jobs were waiting for."""
        self.launcher.reap(now)
        self.launcher.rotator.check()
        self.launcher.mirror.check()
        if self.sweeper.at is not None:
            self.sweeper.sweep([], now)

    def reattach(self) -> int:
        """After a recovery: re-attach to the runs still alive, recover the exit status of
        those that ended meanwhile, mark LOST only what cannot be known."""
        counts = reconcile(self.sup, self.layout, self.env, self.launcher, self.record)
        self._recovered = (counts["recovered"], counts["lost"])
        return counts["attached"]

    def recovered(self) -> tuple[int, int]:
        return self._recovered

    # -- runs ----------------------------------------------------------------------------------

    def start(self, watch: Watch) -> None:
        self.launcher.attach(watch)

    def stop(self) -> None:
        self.launcher.detach()

    @property
    def busy(self) -> bool:
        return self.launcher.busy

    def launch(self, run: RunKey) -> None:
        self.crash.hit("spawn")
        self.launcher.spawn(run)

    def signal(self, run: RunKey, sig: int) -> None:
        self.launcher.signal(run, sig)

    def ended(self, job: int, signalled: bool) -> None:
        self._sweeps.append((job, signalled))

    def flush(self) -> None:
        self.launcher.flush()
        sweeps, self._sweeps = self._sweeps, []
        self.sweeper.sweep(sweeps, self.clock())  # after the spawns: the next runs need not wait

    def hangup(self) -> None:
        self.launcher.tell_hangup(True)

    def finish(self) -> None:
        self.sweeper.sweep([])

    def lose(self, runs: Mapping[RunKey, tuple[int, int]], jobs: list[int]) -> None:
        self.launcher.withdraw_all()
        for key, (pid, ticks) in runs.items():
            self.launcher.signal_tree(key, pid, ticks, SIGKILL)
        self.sweeper.sweep([(job, True) for job in jobs])
        self.launcher.forget_all()
