"""The slurm-steps backend: each run starts on this host's supervisor as a step of the Slurm
allocation corral runs in (inside salloc or sbatch).

Everything but the command line is the local backend's (supervisor/local.py): the reaper
starts `srun --exact ... -- ARGV` instead of ARGV, and waits for it like any run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from corral.backends.slurm_client import SlurmClient, in_allocation
from corral.backends.slurm_errors import SlurmError
from corral.errors import UserError
from corral.spec.model import Task
from corral.supervisor.local import LocalBackend


def check_steps(where: str | None = None, environ: Mapping[str, str] | None = None) -> None:
    """Outside an allocation, srun would make one allocation per run: refused, before anything
    is recorded."""
    if in_allocation(environ) is None:
        prefix = f"{where}: backend" if where else "backend"
        raise UserError(
            f"{prefix}: slurm-steps runs processes as steps of the Slurm allocation corral runs in, "
            "and SLURM_JOB_ID is not set: start corral inside salloc or sbatch, or use backend: slurm"
        )


class SlurmStepsBackend(LocalBackend):
    def command(self, argv: list[str], task: Task, process: str) -> list[str]:
        """Each run is an exclusive srun step of the allocation."""
        res = task.resources
        cpus = max(1, math.ceil(res.cpus)) if res.cpus else 1
        try:
            return SlurmClient().srun_step_argv(
                argv, cpus=cpus, memory_bytes=res.memory or None, name=f"{self.layout.id}.{process}"
            )
        except SlurmError as exc:  # srun missing: the run fails to spawn, the supervisor goes on
            raise OSError(str(exc)) from None
