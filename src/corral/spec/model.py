"""The spec model: what a task and an ensemble are, as typed structs.

Loaders (spec/load.py) turn YAML/JSON/TOML or Python objects into these; templating
(spec/template.py) renders their strings; validation (spec/validate.py) checks the graph.
Every struct forbids unknown fields so a typo is an error naming its field path.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class Rotate(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    size: int = 10 * 1024 * 1024  # bytes; loaders accept "10MB"
    backups: int = 5


class Logger(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    destination: Literal["file", "console", "both", "none"] = "file"
    mode: Literal["standard", "rotate"] = "standard"
    rotate: Rotate = Rotate()


class Resources(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    cpus: float = 0.0  # 0 = not declared
    memory: int = 0  # bytes; loaders accept "1GB"
    gpus: int = 0
    walltime: float | None = None  # seconds; loaders accept "1:30:00"


class Pilot(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Pilot workers: a few long Slurm jobs (`corral worker`) that run an ensemble's jobs."""

    workers: int = 1  # worker jobs started at once while jobs are pending
    max_workers: int | None = None  # at most this many alive (None: = workers)
    cpus: int = 1  # CPUs of one worker; jobs are admitted by their declared resources.cpus
    memory: int = 0  # bytes of one worker (0: not asked of Slurm, not checked)
    time: float = 3600.0  # walltime of one worker job, seconds
    idle_timeout: float = 60.0  # a worker without a job this long leaves
    silence: float = 30.0  # a worker not heard of this long is cancelled, its jobs judged LOST
    stream_logs: bool = False  # jobs' output goes to the launcher (one file pair per worker)
    stream_spool: int = 1 << 30  # bytes of output a worker holds unsent at most (then drops)


class Slurm(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: float | None = None  # seconds; loaders accept "HH:MM:SS" / "D-HH:MM:SS"
    cpus_per_task: int | None = None
    memory: int | None = None  # bytes
    gres: str | None = None
    extra: tuple[str, ...] = ()  # extra sbatch arguments, passed as they are
    requeue: bool = False  # requeue after preemption / walltime
    poll_interval: float = 2.0
    pilot: Pilot | None = None  # run an ensemble's jobs on pilot workers (see Pilot)


class Control(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    listen: str | None = None  # HOST:PORT of a TCP control listener (port 0: a free one)


class Journal(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """When a live supervisor compacts its journal (supervisor/compaction.py)."""

    compact_at: int = 64 * 1024 * 1024  # bytes; loaders accept "64MB"
    compact_records: int = 1_000_000  # or once it holds this many records
    keep_history: bool = False  # keep the old journals under ROOT/ID/history instead of deleting them


class Process(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: str
    cmd: str | None = None  # a /bin/sh command line
    argv: tuple[str, ...] | None = None  # a program and its arguments, no shell
    after: tuple[str, ...] = ()
    max_failures: int = 1  # failed runs tolerated before the process fails; 0 = retry forever
    daemon: bool = False  # restart after success
    ephemeral: bool = False  # not waited for; killed when the rest is done
    min_duration: float = 0.0  # seconds between the starts of two runs
    timeout: float | None = None  # wall-clock limit of one run, seconds (paused time excluded)
    env: dict[str, str] = {}
    env_clean: bool = False  # start from PATH, HOME and the CORRAL_* marks, not corral's environment
    final: bool = False  # runs after the regular processes, within finalization_wait
    logger: Logger = Logger()
    user: str | None = None  # run as this user (the supervisor must be root); default: the task's


class Task(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: str
    processes: tuple[Process, ...]
    max_failures: int = 1  # failed processes the task tolerates; 0 = no limit
    max_concurrency: int = 0  # 0 = unlimited
    finalization_wait: float = 30.0
    kill_grace: float = 5.0  # TERM -> KILL escalation delay
    resources: Resources = Resources()
    sandbox: str | None = None  # working directory; default ROOT/ID/sandbox
    env: dict[str, str] = {}
    env_clean: bool = False  # for every process (see Process.env_clean)
    user: str | None = None  # every process runs as this user unless it names its own
    backend: Literal["local", "slurm", "slurm-steps"] = "local"
    slurm: Slurm = Slurm()
    control: Control = Control()
    journal: Journal = Journal()


class Halt(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    failures: int | None = None  # stop after this many failed jobs
    failure_rate: float | None = None  # or this fraction of finished jobs (>= 10 finished)
    mode: Literal["finish", "kill"] = "finish"  # let running jobs finish, or kill them


class Range(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    range: tuple[int, ...]  # [stop] | [start, stop] | [start, stop, step], like Python's range


class JobTemplate(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A task template: one command, or a full processes list."""

    cmd: str | None = None
    argv: tuple[str, ...] | None = None
    processes: tuple[Process, ...] | None = None
    env: dict[str, str] = {}
    env_clean: bool = False
    user: str | None = None  # the job's runs run as this user (see Task.user)
    timeout: float | None = None
    heartbeat: float | None = None  # seconds of silence before the job is killed and retried
    max_failures: int = 1
    max_concurrency: int = 0
    finalization_wait: float = 30.0
    kill_grace: float = 5.0
    resources: Resources = Resources()
    logger: Logger = Logger()


class Ensemble(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: str
    job: JobTemplate
    params: dict[str, tuple[str | int | float | bool, ...] | Range] = {}
    params_file: str | None = None  # CSV with a header row, or JSON lines
    job_limit: int = 0  # 0 = the number of CPUs
    retries: int = 0  # extra attempts per failed job
    retry_backoff: float = 1.0  # seconds; doubles at each attempt, capped at 60
    halt: Halt = Halt()
    backend: Literal["local", "slurm", "slurm-steps"] = "local"
    slurm: Slurm = Slurm()
    control: Control = Control()
    journal: Journal = Journal()
