"""What bench/slurm.py and its peers share: the result row and Slurm queries."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from typing import NoReturn

PREFIX = "cbench-"  # in the name of every Slurm job of the bench; only these are waited for

TERMINAL = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "OUT_OF_MEMORY",
    "BOOT_FAIL", "DEADLINE", "REVOKED",
}  # fmt: skip


class BenchFailed(Exception):
    """One system of the bench failed; the others still run and the table says why."""


def made_under(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(files, directories) under PATH: the inodes a run left on the (shared) file system."""
    files = dirs = 0
    for _, subdirs, names in os.walk(path):
        files += len(names)
        dirs += len(subdirs)
    return files, dirs


def fail(why: str) -> NoReturn:
    raise BenchFailed(why)


@dataclass
class Result:
    name: str
    jobs: int
    submit: float  # seconds until every job was handed over
    finished: float  # seconds until every job had ended (end to end)
    ok: int = 0  # jobs that succeeded
    commands: dict[str, int] = field(default_factory=dict)  # Slurm commands issued
    note: str = ""
    made: tuple[int, int] = (0, 0)  # (files, directories) under the run's directory (corral)

    @property
    def rate(self) -> float:
        return self.jobs / self.finished if self.finished > 0 else 0.0


@dataclass
class Skipped:
    name: str
    why: str


def ended(state: str | None) -> bool:
    return state is None or state in TERMINAL


def squeue_states(name: str) -> dict[str, str]:
    """Job id -> state of the jobs named NAME (array tasks as BASE_I), including ended ones."""
    out = subprocess.run(
        ["squeue", "-h", "--states=all", "--array", f"--name={name}", "-o", "%i %T"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return dict(line.split() for line in out.stdout.splitlines() if line.strip())


def ours_alive() -> list[str]:
    """Ids of the bench's Slurm jobs still queued or running."""
    out = subprocess.run(["squeue", "-h", "-o", "%i %j %T"], capture_output=True, text=True, check=True)
    rows = [line.split() for line in out.stdout.splitlines() if line.strip()]
    return [r[0] for r in rows if len(r) == 3 and PREFIX in r[1] and not ended(r[2])]


def wait_idle(timeout: float = 600) -> None:
    """Wait until no job of the bench is queued or running (so one system does not slow the next)."""
    deadline = time.time() + timeout
    while ours_alive():
        if time.time() > deadline:
            raise SystemExit("the bench's own Slurm jobs did not drain")
        time.sleep(1)


def advertised_cpus() -> int:
    out = subprocess.run(["sinfo", "-h", "-o", "%C"], capture_output=True, text=True, check=True)
    return sum(int(line.split("/")[3]) for line in out.stdout.split())


def machine_load() -> str:
    one, five, _ = os.getloadavg()
    out = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%j"], capture_output=True, text=True, check=False)
    others = [n for n in out.stdout.split() if PREFIX not in n]
    return f"load {one:.1f} (5 min {five:.1f}), {len(others)} other Slurm jobs running"
