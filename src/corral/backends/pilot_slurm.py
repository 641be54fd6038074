"""Pilot workers as Slurm jobs: the worker script, its sbatch, finding and watching the workers.

The shell's side only: one sbatch array per batch of workers, one squeue for all of them per
poll, one scancel. What Slurm's answers mean is core's (core/pilot.py `judge_worker`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from corral.backends.slurm import SEEN
from corral.backends.slurm_client import SlurmClient
from corral.backends.slurm_errors import SlurmError
from corral.backends.slurm_layout import one_line
from corral.backends.slurm_sbatch import SbatchRequest
from corral.core.outcome import Seen
from corral.errors import UserError
from corral.spec.model import Pilot, Slurm

LEFT_EVERY = 30.0  # seconds between two asks for the running workers' time left


def left_every(environ: Mapping[str, str] = os.environ) -> float:
    """LEFT_EVERY, or CORRAL_PILOT_LEFT_EVERY (internal, for tests: seconds, 0.1 to 1e6)."""
    text = environ.get("CORRAL_PILOT_LEFT_EVERY", "")
    try:
        value = float(text) if text else LEFT_EVERY
    except ValueError:
        value = -1.0
    if not 0.1 <= value <= 1e6:
        raise UserError(f"CORRAL_PILOT_LEFT_EVERY={text[:40]!r}: expected seconds between 0.1 and 1e6")
    return value


def pilot_dir(root: Path, task_id: str) -> Path:
    return root / task_id / "pilot"


def worker_script(root: Path, task_id: str, pilot: Pilot) -> str:
    return (
        "#!/bin/sh\n"
        "# corral: a pilot worker of this ensemble (it takes jobs from the launcher over TCP)\n"
        "unset CORRAL_CRASH  # fault injection aims at the launcher, not at its workers\n"
        f'exec "{sys.executable}" -m corral --root "{root}" worker "{task_id}" '
        '"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}" '
        f"--cpus {pilot.cpus} --memory {pilot.memory} --time {pilot.time:g} "
        f"--idle-timeout {pilot.idle_timeout:g}"
        + (f" --stream-logs --spool {pilot.stream_spool}" if pilot.stream_logs else "")
        + "\n"
    )


@dataclass
class WorkerJobs:
    """The Slurm jobs of one ensemble's workers (named SLURMID_INDEX)."""

    root: Path
    task_id: str
    slurm: Slurm
    pilot: Pilot
    client: SlurmClient = field(default_factory=SlurmClient)
    arrays: set[str] = field(default_factory=set)  # Slurm ids of our worker arrays

    def job_name(self) -> str:
        return f"corral-pilot-{self.task_id}"

    def request(self, count: int) -> SbatchRequest:
        out = pilot_dir(self.root, self.task_id)
        return SbatchRequest(
            script=worker_script(self.root, self.task_id, self.pilot),
            job_name=self.job_name(),
            array=f"0-{count - 1}",
            output=str(out / "slurm-%A_%a.out"),
            chdir=str(self.root / self.task_id),
            requeue=False,
            partition=self.slurm.partition,
            account=self.slurm.account,
            qos=self.slurm.qos,
            time_limit_seconds=self.pilot.time,
            cpus_per_task=self.pilot.cpus,
            memory_bytes=self.pilot.memory or None,
            gres=self.slurm.gres,
            extra_args=tuple(self.slurm.extra),
        )

    def check(self, prefix: str) -> None:
        """UserError (one line) if Slurm is missing or would refuse a worker job."""
        try:
            self.client.command_path("sbatch")
            self.client.command_path("squeue")
            proc = self.client.sbatch_test_only(self.request(1))
        except SlurmError as exc:
            raise UserError(f"{prefix}: {one_line(str(exc))}") from None
        if proc.returncode != 0:
            text = one_line(proc.stderr or proc.stdout or f"exit status {proc.returncode}")
            raise UserError(f"{prefix}: sbatch refused the pilot worker job: {text}")

    def submit(self, count: int) -> list[str]:
        """Submit `count` workers as one array: their names. SlurmError: none was submitted."""
        pilot_dir(self.root, self.task_id).mkdir(parents=True, exist_ok=True)
        array = self.client.sbatch(self.request(count))
        self.arrays.add(array)
        return [f"{array}_{index}" for index in range(count)]

    def find(self) -> list[str] | None:
        """After a recovery: our workers Slurm still holds, by job name (None: squeue failed)."""
        try:
            infos = self.client.squeue_named(self.job_name())
        except SlurmError:
            return None
        names = []
        for info in infos.values():
            if info.array_job_id is None or info.array_task_id is None:
                continue
            self.arrays.add(info.array_job_id)
            if not info.terminal:
                names.append(f"{info.array_job_id}_{info.array_task_id}")
        return names

    def observe(self, names: list[str]) -> dict[str, Seen] | None:
        """One squeue for every worker array: each worker's state (GONE: squeue does not
        list it). None: squeue failed (unknown; silence alone decides nothing)."""
        bases = {name.split("_")[0] for name in names} | self.arrays
        if not bases:
            return {}
        try:
            infos = self.client.squeue(bases)
        except SlurmError:
            return None
        return {name: (Seen.GONE if name not in infos else SEEN[infos[name].state]) for name in names}

    def time_left(self, names: list[str]) -> dict[str, float]:
        """Seconds left of these running workers' allocations ({} if squeue failed)."""
        try:
            return self.client.time_left(names)
        except SlurmError:
            return {}

    def cancel(self, names: list[str], everything: bool = False) -> None:
        """scancel these workers (and, with `everything`, every worker array of ours)."""
        ids = set(names) | (self.arrays if everything else set())
        if ids:
            with contextlib.suppress(SlurmError):
                self.client.scancel(sorted(ids))
