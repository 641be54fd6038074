"""Where a run starts, what its environment holds, where its output goes, how it is found.

Paths are kept as strings computed once: pathlib costs several microseconds per join, and the
spawn path of a 5,000-job ensemble would pay it a hundred thousand times.
"""

from __future__ import annotations

import os

from corral.spec.model import Task
from corral.supervisor import proc
from corral.supervisor.layout import Layout, log_name

# a key no real environment can hold (NUL): tells the reaper to start from PATH and HOME only
CLEAN = "\0clean"


class RunEnvironment:
    def __init__(self, layout: Layout, ensemble: bool) -> None:
        self.layout = layout
        self.ensemble = ensemble
        self.dir = str(layout.dir)
        self.jobs_prefix = os.path.join(self.dir, "jobs", "")
        self.sandbox = str(layout.sandbox)
        self.logs_prefix = os.path.join(str(layout.logs), "")
        self.root = str(layout.root)
        self.control = layout.control  # CORRAL_CONTROL as runs see it
        self.token: str | None = None  # CORRAL_TOKEN: when runs reach us over TCP
        self.public: dict[str, str] = {}  # CORRAL_* seen by runs, if not ours (a Slurm node)
        # CORRAL_JOB as runs see it, where our job numbers are not the ensemble's (a pilot
        # worker numbers the jobs it takes; the marks keep our own numbers)
        self.shown_jobs: dict[int, int] = {}

    def log_path(self, job: int, process: str, run: int) -> str:
        """layout.log_file without the stream suffix, as a string (pathlib is slower)."""
        return self.logs_prefix + log_name(job if self.ensemble else None, process, run, "")[:-1]

    def cwd(self, job: int, task: Task) -> str:
        """Where a run starts; the reaper creates it if needed."""
        if task.sandbox is not None:
            return os.path.abspath(task.sandbox)  # relative to where the supervisor runs
        return self.jobs_prefix + str(job) if self.ensemble else self.sandbox

    def run_env(
        self, job: int, process: str, run: int, task: Task, extra: dict[str, str], clean: bool = False
    ) -> dict[str, str]:
        """What a run's environment adds to the supervisor's (the reaper's own); with `clean`,
        to PATH and HOME only (the reaper sees the CLEAN key)."""
        env: dict[str, str] = {CLEAN: ""} if clean else {}
        if task.env:
            env.update(task.env)
        if extra:
            env.update(extra)
        env["CORRAL_ROOT"] = self.root
        env["CORRAL_TASK_ID"] = self.layout.id
        job_text = str(job)
        shown = self.shown_jobs.get(job)
        env["CORRAL_JOB"] = job_text if shown is None else str(shown)
        env["CORRAL_PROCESS"] = process
        env["CORRAL_RUN"] = str(run)
        env["CORRAL_CONTROL"] = self.control
        if self.token:
            env["CORRAL_TOKEN"] = self.token
        if self.public:
            env.update(self.public)
        # the marks by which a run's escaped descendants are found, even after a crash
        env["CORRAL_MARK"] = self.dir
        env["CORRAL_MARK_JOB"] = job_text
        return env

    def needles(self, job: int, process: str | None = None, run: int | None = None) -> list[bytes]:
        """The environment marks of a job's (or one run's) processes, for proc.find_marked."""
        needles = [proc.marker("CORRAL_MARK", self.dir), proc.marker("CORRAL_MARK_JOB", str(job))]
        if process is not None:
            needles.append(proc.marker("CORRAL_PROCESS", process))
        if run is not None:
            needles.append(proc.marker("CORRAL_RUN", str(run)))
        return needles
