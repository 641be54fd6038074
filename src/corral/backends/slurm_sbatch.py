"""``sbatch``: what one submission asks (:class:`SbatchRequest`), its argv, its answer."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from corral.backends.slurm_errors import SlurmError

__all__ = [
    "SbatchRequest",
    "expand_array_spec",
    "format_memory",
    "format_time_limit",
    "parse_sbatch_output",
    "sbatch_argv",
]


@dataclass(frozen=True)
class SbatchRequest:
    """One ``sbatch`` submission (a single job or a job array).

    Give exactly one of ``script`` (the text, passed on stdin), ``script_path`` or ``wrap``
    (a command line, ``sbatch --wrap``). ``output``/``error`` accept Slurm's patterns
    (``%A`` array id, ``%a`` task index, ``%j`` job id). ``env`` is added to the submitting
    environment and exported with ``--export=ALL`` (so values may contain commas).
    ``memory_bytes`` is rounded up to whole MiB. ``time_limit_seconds`` is rounded up to
    whole minutes by Slurm. ``signal`` is passed as ``--signal`` (e.g. ``"B:TERM@60"`` to
    warn the batch script 60 s before its time limit).
    """

    script: str | None = None
    script_path: str | os.PathLike[str] | None = None
    wrap: str | None = None
    job_name: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit_seconds: float | None = None
    cpus_per_task: int | None = None
    memory_bytes: int | None = None
    gres: str | None = None
    array: str | None = None
    output: str | None = None
    error: str | None = None
    chdir: str | os.PathLike[str] | None = None
    requeue: bool | None = None
    signal: str | None = None
    comment: str | None = None
    extra_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        given = sum(x is not None for x in (self.script, self.script_path, self.wrap))
        if given != 1:
            raise ValueError("SbatchRequest needs exactly one of script, script_path, wrap")
        if self.cpus_per_task is not None and self.cpus_per_task < 1:
            raise ValueError(f"cpus_per_task must be >= 1, got {self.cpus_per_task}")
        if self.memory_bytes is not None and self.memory_bytes < 1:
            raise ValueError(f"memory_bytes must be >= 1, got {self.memory_bytes}")
        if self.time_limit_seconds is not None and self.time_limit_seconds <= 0:
            raise ValueError(f"time_limit_seconds must be > 0, got {self.time_limit_seconds}")
        for key in self.env:
            if not key or "=" in key or "\0" in key:
                raise ValueError(f"invalid environment variable name {key!r}")
        if self.array is not None:
            expand_array_spec(self.array)  # raises ValueError when malformed


def format_time_limit(seconds: float) -> str:
    """Seconds -> Slurm's ``D-HH:MM:SS`` (rounded up to a whole second)."""
    total = max(1, math.ceil(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"


def format_memory(memory_bytes: int) -> str:
    """Bytes -> ``<MiB>M`` (rounded up; never 0, which would mean 'all memory')."""
    return f"{max(1, math.ceil(memory_bytes / (1024 * 1024)))}M"


# --------------------------------------------------------------------------- parsing

_RANGE = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$")


def expand_array_spec(spec: str) -> list[int]:
    """Expand an array index spec (``"0-9"``, ``"3,7,9-11%4"``, ``"0-15:4"``,
    ``"[2-19%4]"``) to the sorted list of task indices. The ``%`` throttle is ignored.
    """
    text = spec.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]
    if not text:
        raise ValueError(f"empty array spec {spec!r}")
    out: set[int] = set()
    for part in text.split(","):
        m = _RANGE.match(part.strip())
        if m is None:
            raise ValueError(f"bad array spec {spec!r}: {part!r}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        step = int(m.group(3)) if m.group(3) is not None else 1
        if hi < lo or step < 1:
            raise ValueError(f"bad array range {part!r} in {spec!r}")
        out.update(range(lo, hi + 1, step))
    return sorted(out)


def sbatch_argv(req: SbatchRequest) -> list[str]:
    """The arguments (after the ``sbatch`` command itself) for ``req``."""
    args = ["--parsable", "--export=ALL"]
    if req.job_name is not None:
        args.append(f"--job-name={req.job_name}")
    if req.partition is not None:
        args.append(f"--partition={req.partition}")
    if req.account is not None:
        args.append(f"--account={req.account}")
    if req.qos is not None:
        args.append(f"--qos={req.qos}")
    if req.time_limit_seconds is not None:
        args.append(f"--time={format_time_limit(req.time_limit_seconds)}")
    if req.cpus_per_task is not None:
        args.append(f"--cpus-per-task={req.cpus_per_task}")
    if req.memory_bytes is not None:
        args.append(f"--mem={format_memory(req.memory_bytes)}")
    if req.gres is not None:
        args.append(f"--gres={req.gres}")
    if req.array is not None:
        args.append(f"--array={req.array}")
    if req.output is not None:
        args.append(f"--output={req.output}")
    if req.error is not None:
        args.append(f"--error={req.error}")
    if req.chdir is not None:
        args.append(f"--chdir={os.fspath(req.chdir)}")
    if req.requeue is not None:
        args.append("--requeue" if req.requeue else "--no-requeue")
    if req.signal is not None:
        args.append(f"--signal={req.signal}")
    if req.comment is not None:
        args.append(f"--comment={req.comment}")
    args.extend(req.extra_args)
    if req.wrap is not None:
        args.append(f"--wrap={req.wrap}")
    elif req.script_path is not None:
        args.append(os.fspath(req.script_path))
    # else: the script text goes to stdin
    return args


def parse_sbatch_output(stdout: str) -> str:
    """``sbatch --parsable`` prints ``123`` or ``123;cluster``; return ``"123"``."""
    for line in stdout.splitlines():
        text = line.strip()
        if not text:
            continue
        job_id = text.split(";", 1)[0].strip()
        if job_id.isdigit():
            return job_id
    raise SlurmError(f"sbatch printed no job id: {stdout.strip()!r}")
