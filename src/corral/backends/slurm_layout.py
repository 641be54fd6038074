"""A journal's Slurm jobs on disk and as sbatch asks for them: the node journals' paths, the
script a node runs, a task's resources as sbatch options, an array spec, Slurm's message as
one line. No policy."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import msgspec

from corral.core.records import Opened
from corral.spec.model import Slurm, Task

__all__ = [
    "array_spec",
    "job_task_file",
    "node_layout_root",
    "node_script",
    "one_line",
    "sbatch_options",
    "slurm_dir",
    "slurm_options",
]


def slurm_options(opened: Opened) -> Slurm:
    """The `slurm` block a journal recorded."""
    options = dict(opened.spec.get("slurm") or {})
    options.pop("array", None)  # journals before 2026-11 carry a `slurm.array` nothing read
    return msgspec.convert(options, Slurm)


def slurm_dir(root: Path, task_id: str) -> Path:
    return root / task_id / "slurm"


def job_task_file(root: Path, task_id: str, job: int) -> Path:
    return slurm_dir(root, task_id) / str(job) / "task.json"


def node_layout_root(root: Path, task_id: str, job: int) -> Path:
    """Root of the node-side task journals of one job: one task id per Slurm job id."""
    return slurm_dir(root, task_id) / str(job)


def sbatch_options(task: Task, slurm: Slurm) -> dict[str, Any]:
    """A task's resources and the spec's slurm block as sbatch options (block wins)."""
    res = task.resources
    gres = slurm.gres or (f"gpu:{res.gpus}" if res.gpus else None)
    return {
        "partition": slurm.partition,
        "account": slurm.account,
        "qos": slurm.qos,
        "time_limit_seconds": slurm.time or res.walltime,
        "cpus_per_task": slurm.cpus_per_task or (math.ceil(res.cpus) if res.cpus else None),
        "memory_bytes": slurm.memory or (res.memory or None),
        "gres": gres,
        "extra_args": tuple(slurm.extra),
    }


def node_script(root: Path, task_id: str) -> str:
    python = sys.executable
    return (
        "#!/bin/sh\n"
        "# corral: supervise one job's task on this node (job = array task index)\n"
        "unset CORRAL_CRASH  # fault injection aims at the launcher, not at its jobs\n"
        f'exec "{python}" -m corral --root "{root}" slurm-job "{task_id}" "$SLURM_ARRAY_TASK_ID"\n'
    )


def one_line(text: str) -> str:
    """Slurm's multi-line message as one line, without the repeated 'sbatch: error: '."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    lines = [line.removeprefix("sbatch: error: ").removeprefix("sbatch: ") for line in lines]
    return "; ".join(lines)


def array_spec(jobs: list[int]) -> str:
    """[1,2,3,7,9,10] -> '1-3,7,9-10'."""
    parts = []
    start = prev = jobs[0]
    for job in jobs[1:]:
        if job == prev + 1:
            prev = job
            continue
        parts.append(f"{start}-{prev}" if prev > start else str(start))
        start = prev = job
    parts.append(f"{start}-{prev}" if prev > start else str(start))
    return ",".join(parts)
