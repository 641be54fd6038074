"""A thin, typed wrapper over the Slurm command-line tools.

This module knows how to *talk* to Slurm (build argv, run it, parse the answer); it decides
nothing. The Slurm backend (and the slurm-steps backend inside an allocation) build on it.

Design points:

* Every call is one ``subprocess.run`` with an explicit timeout and no shell.
* :meth:`SlurmClient.squeue` answers for *all* tracked jobs with exactly one ``squeue`` call,
  whatever their number (when the ``--jobs`` list would be too long for one argv string, it
  asks for every job and filters locally: still one call). Pending array ranges such as
  ``123_[5-99%4]`` are expanded to one entry per task.
* :attr:`SlurmClient.counts` counts the commands issued per kind (``sbatch``, ``squeue``,
  ``scancel``, ``sinfo``, ``srun``), so benchmarks can report them.
* Slurm's own error text is kept in :class:`SlurmError`; a missing installation raises
  :class:`SlurmMissing` with a hint on how to fix it.

Job ids are strings. An array task is ``"<array id>_<task>"`` (``"123_4"``), a plain job
``"123"``. Querying with an array's base id (``"123"``) returns all of its tasks.
"""

from __future__ import annotations

import collections
import enum
import math
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "TERMINAL_STATES",
    "SbatchRequest",
    "SlurmClient",
    "SlurmError",
    "SlurmJobInfo",
    "SlurmMissing",
    "SlurmState",
    "SlurmTimeout",
    "expand_array_spec",
    "format_time_limit",
    "in_allocation",
    "is_terminal",
    "map_state",
    "parse_exit_status",
    "parse_squeue",
    "parse_time_left",
]


# --------------------------------------------------------------------------- errors


class SlurmError(Exception):
    """A Slurm command failed. ``str(err)`` carries Slurm's own message."""

    def __init__(
        self,
        message: str,
        *,
        argv: Sequence[str] = (),
        returncode: int | None = None,
        stderr: str = "",
    ) -> None:
        super().__init__(message)
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr


class SlurmMissing(SlurmError):
    """The Slurm client commands are not installed or not on PATH."""


class SlurmTimeout(SlurmError):
    """A Slurm command did not answer in time.

    For ``sbatch`` the outcome is unknown: the controller may have accepted the job. Callers
    that must not double-submit should look for the job by its unique name/comment.
    """


# --------------------------------------------------------------------------- states


class SlurmState(enum.Enum):
    """Slurm job states (``squeue``/``scontrol``/``sacct`` long names), UNKNOWN for others."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    PREEMPTED = "PREEMPTED"
    NODE_FAIL = "NODE_FAIL"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    REQUEUED = "REQUEUED"
    SUSPENDED = "SUSPENDED"
    COMPLETING = "COMPLETING"
    CONFIGURING = "CONFIGURING"
    RESIZING = "RESIZING"
    REQUEUE_HOLD = "REQUEUE_HOLD"
    REQUEUE_FED = "REQUEUE_FED"
    SPECIAL_EXIT = "SPECIAL_EXIT"
    STOPPED = "STOPPED"
    SIGNALING = "SIGNALING"
    STAGE_OUT = "STAGE_OUT"
    REVOKED = "REVOKED"
    UNKNOWN = "UNKNOWN"


# squeue's compact codes (``%t``), accepted too
_COMPACT: dict[str, SlurmState] = {
    "PD": SlurmState.PENDING,
    "R": SlurmState.RUNNING,
    "CD": SlurmState.COMPLETED,
    "F": SlurmState.FAILED,
    "CA": SlurmState.CANCELLED,
    "TO": SlurmState.TIMEOUT,
    "PR": SlurmState.PREEMPTED,
    "NF": SlurmState.NODE_FAIL,
    "OOM": SlurmState.OUT_OF_MEMORY,
    "BF": SlurmState.BOOT_FAIL,
    "DL": SlurmState.DEADLINE,
    "RQ": SlurmState.REQUEUED,
    "S": SlurmState.SUSPENDED,
    "CG": SlurmState.COMPLETING,
    "CF": SlurmState.CONFIGURING,
    "RS": SlurmState.RESIZING,
    "RH": SlurmState.REQUEUE_HOLD,
    "RF": SlurmState.REQUEUE_FED,
    "SE": SlurmState.SPECIAL_EXIT,
    "ST": SlurmState.STOPPED,
    "SI": SlurmState.SIGNALING,
    "SO": SlurmState.STAGE_OUT,
    "RV": SlurmState.REVOKED,
}

#: The job is over as far as Slurm is concerned (it will not run again unless resubmitted
#: or explicitly requeued).
TERMINAL_STATES: frozenset[SlurmState] = frozenset(
    {
        SlurmState.COMPLETED,
        SlurmState.FAILED,
        SlurmState.CANCELLED,
        SlurmState.TIMEOUT,
        SlurmState.PREEMPTED,
        SlurmState.NODE_FAIL,
        SlurmState.OUT_OF_MEMORY,
        SlurmState.BOOT_FAIL,
        SlurmState.DEADLINE,
        SlurmState.REVOKED,
    }
)


def map_state(slurm_state: str) -> SlurmState:
    """Map Slurm's state text to :class:`SlurmState`.

    Accepts long names (``RUNNING``), decorated ones (``CANCELLED by 0``, sacct's truncated
    ``CANCELLED+``), any case, and squeue's compact codes (``PD``, ``CD``...).
    Anything else is ``UNKNOWN``.
    """
    text = slurm_state.strip()
    if not text:
        return SlurmState.UNKNOWN
    word = text.split()[0].rstrip("+").upper()
    try:
        return SlurmState(word)
    except ValueError:
        return _COMPACT.get(word, SlurmState.UNKNOWN)


def is_terminal(state: SlurmState) -> bool:
    return state in TERMINAL_STATES


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class SlurmJobInfo:
    """What Slurm says about one job or one array task.

    ``job_id`` is the display id (``"123"`` or ``"123_4"``); ``raw_job_id`` is Slurm's own
    numeric id for the record (an array task has its own, e.g. ``"130"`` for ``"123_4"``;
    tasks still pending share the array's id). ``exit_code``/``signal`` come from the wait
    status when Slurm reports one (None when unknown).
    """

    job_id: str
    state: SlurmState
    raw_state: str = ""
    reason: str = ""
    raw_job_id: str = ""
    array_job_id: str | None = None
    array_task_id: int | None = None
    exit_code: int | None = None
    signal: int | None = None
    nodes: str = ""
    name: str = ""
    details: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def terminal(self) -> bool:
        return is_terminal(self.state)


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


def parse_time_left(text: str) -> float | None:
    """squeue's ``%L`` (``[D-]HH:MM:SS``, ``MM:SS``, ``SS``) -> seconds; None for
    ``UNLIMITED``, ``NOT_SET``, ``INVALID`` or anything else."""
    days, _, clock = text.strip().rpartition("-")
    parts = clock.split(":")
    digits = [*parts, days] if _ else parts
    if len(parts) > 3 or not all(p.isascii() and p.isdigit() for p in digits):
        return None
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + int(part)
    return float(seconds + int(days or 0) * 86400)


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


def parse_exit_status(value: str) -> tuple[int | None, int | None]:
    """Parse Slurm's exit information into ``(exit_code, signal)``.

    Accepts ``"a:b"`` (scontrol/sacct: exit code, signal) and a raw wait status
    (squeue ``exit_code``: ``768`` -> exit 3, ``9`` -> signal 9). Unknown -> ``(None, None)``.
    """
    text = value.strip()
    if not text or text.upper() in {"N/A", "(NULL)"}:
        return None, None
    if ":" in text:
        a, _, b = text.partition(":")
        try:
            return int(a), int(b)
        except ValueError:
            return None, None
    try:
        status = int(text)
    except ValueError:
        return None, None
    if status < 0:
        return None, None
    if status & 0x7F:
        return None, status & 0x7F
    return (status >> 8) & 0xFF, 0


# squeue -O fields, in order; every field is followed by the separator. Name goes last so a
# name containing the separator cannot shift the other fields.
_SEP = "|"
_SQUEUE_FIELDS = (
    "JobArrayID",
    "JobID",
    "ArrayJobID",
    "ArrayTaskID",
    "State",
    "Reason",
    "exit_code",
    "NodeList",
    "Name",
)
SQUEUE_FORMAT = ",".join(f"{f}:{_SEP}" for f in _SQUEUE_FIELDS)


def _na(value: str) -> str | None:
    v = value.strip()
    return None if v in {"", "N/A", "(null)", "4294967294"} else v


def _expand_into(out: dict[str, SlurmJobInfo], base: SlurmJobInfo, array_job_id: str, task_spec: str) -> None:
    """Add one entry per task of a pending range (``task_spec`` like ``"2-19%4"``)."""
    for idx in expand_array_spec(task_spec):
        jid = f"{array_job_id}_{idx}"
        out[jid] = SlurmJobInfo(
            job_id=jid,
            state=base.state,
            raw_state=base.raw_state,
            reason=base.reason,
            raw_job_id=base.raw_job_id,
            array_job_id=array_job_id,
            array_task_id=idx,
            exit_code=base.exit_code,
            signal=base.signal,
            nodes=base.nodes,
            name=base.name,
            details=base.details,
        )


def _task_index(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def parse_squeue(text: str) -> dict[str, SlurmJobInfo]:
    """Parse the output of ``squeue --noheader -O <SQUEUE_FORMAT>``.

    Returns display id -> info; pending array ranges are expanded per task.
    """
    out: dict[str, SlurmJobInfo] = {}
    nfields = len(_SQUEUE_FIELDS)
    for line in text.splitlines():
        if not line.strip():
            continue
        body = line[:-1] if line.endswith(_SEP) else line
        parts = body.split(_SEP, nfields - 1)
        if len(parts) != nfields:
            raise SlurmError(f"unexpected squeue output line: {line!r}")
        display, raw_id, arr_id, task_id, state, reason, exit_s, nodes, name = (p.strip() for p in parts)
        code, sig = parse_exit_status(exit_s)
        array_job_id = _na(arr_id)
        if array_job_id == _na(raw_id) and _na(task_id) is None:
            array_job_id = None  # plain job: squeue reports ArrayJobID = JobID
        info = SlurmJobInfo(
            job_id=display,
            state=map_state(state),
            raw_state=state,
            reason=reason,
            raw_job_id=raw_id,
            array_job_id=array_job_id,
            array_task_id=_task_index(_na(task_id)),
            exit_code=code,
            signal=sig,
            nodes=nodes,
            name=name,
        )
        if "[" in display and array_job_id is not None:
            _expand_into(out, info, array_job_id, display[display.index("[") :])
        else:
            out[display] = info
    return out


_SCONTROL_KEY = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/.\-]*)=")


# --------------------------------------------------------------------------- environment


def in_allocation(environ: Mapping[str, str] | None = None) -> str | None:
    """The id of the Slurm allocation we run in (``SLURM_JOB_ID``), or None."""
    env = os.environ if environ is None else environ
    return env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or None


# --------------------------------------------------------------------------- client

Runner = Callable[..., "subprocess.CompletedProcess[str]"]

_BENIGN_SCANCEL = (
    "Invalid job id specified",
    "Job/step already completing or completed",
    "already completing or completed",
)
_INSTALL_HINT = (
    "install the Slurm client commands (Debian/Ubuntu: apt-get install slurm-client; "
    "a local test cluster: scripts/slurm-up.sh) or put them on PATH"
)

# one argv string is limited to 128 KiB on Linux (MAX_ARG_STRLEN); the whole argv to ~2 MiB
_MAX_JOBS_ARG = 100_000
_MAX_ARGV_CHARS = 500_000


class SlurmClient:
    """Runs Slurm commands and parses their answers; counts the commands issued.

    ``bin_dir`` (or env ``CORRAL_SLURM_BIN``) overrides where the commands are looked up.
    ``runner`` replaces :func:`subprocess.run` (tests). ``timeout`` bounds each command
    (seconds).
    """

    def __init__(
        self,
        *,
        bin_dir: str | os.PathLike[str] | None = None,
        timeout: float = 60.0,
        runner: Runner | None = None,
    ) -> None:
        if bin_dir is None:
            bin_dir = os.environ.get("CORRAL_SLURM_BIN") or None
        self.bin_dir = Path(bin_dir) if bin_dir is not None else None
        self.timeout = timeout
        self._runner: Runner = runner if runner is not None else subprocess.run
        self.counts: collections.Counter[str] = collections.Counter()
        self._paths: dict[str, str] = {}

    # ------------------------------------------------------------------ plumbing

    def command_path(self, name: str) -> str:
        """Absolute path of a Slurm command; :class:`SlurmMissing` when not found."""
        cached = self._paths.get(name)
        if cached is not None:
            return cached
        if self.bin_dir is not None:
            candidate = self.bin_dir / name
            found = str(candidate) if os.access(candidate, os.X_OK) else None
        else:
            found = shutil.which(name)
        if found is None:
            where = f"in {self.bin_dir}" if self.bin_dir is not None else "on PATH"
            raise SlurmMissing(f"Slurm command '{name}' not found {where}: {_INSTALL_HINT}")
        self._paths[name] = found
        return found

    def available(self) -> bool:
        """True when sbatch and squeue are installed (does not contact the controller)."""
        try:
            self.command_path("sbatch")
            self.command_path("squeue")
        except SlurmMissing:
            return False
        return True

    def _run(
        self,
        name: str,
        args: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv = [self.command_path(name), *args]
        self.counts[name] += 1
        try:
            return self._runner(
                argv,
                input=input,
                capture_output=True,
                text=True,
                env=dict(env) if env is not None else None,
                timeout=self.timeout if timeout is None else timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            self._paths.pop(name, None)
            raise SlurmMissing(f"Slurm command '{name}' not found: {_INSTALL_HINT}") from exc
        except subprocess.TimeoutExpired as exc:
            raise SlurmTimeout(
                f"{name} did not answer within {exc.timeout:g}s (is slurmctld running?)",
                argv=argv,
            ) from exc

    @staticmethod
    def _error(name: str, proc: subprocess.CompletedProcess[str]) -> SlurmError:
        msg = (proc.stderr or "").strip() or (proc.stdout or "").strip()
        if not msg:
            msg = f"exit status {proc.returncode}"
        return SlurmError(
            f"{name} failed: {msg}",
            argv=proc.args if isinstance(proc.args, list) else (),
            returncode=proc.returncode,
            stderr=proc.stderr or "",
        )

    # ------------------------------------------------------------------ sbatch

    def sbatch_argv(self, req: SbatchRequest) -> list[str]:
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

    def sbatch_test_only(self, req: SbatchRequest) -> subprocess.CompletedProcess[str]:
        """``sbatch --test-only``: would the controller accept ``req``? Nothing is submitted;
        the caller reads the answer (exit status, Slurm's own words on stderr)."""
        return self._run("sbatch", ["--test-only", *self.sbatch_argv(req)], input=req.script)

    def sbatch(self, req: SbatchRequest) -> str:
        """Submit; return the job id (the array id for an array).

        A refused submission raises :class:`SlurmError` with Slurm's message; nothing else
        is done. A timeout raises :class:`SlurmTimeout` (outcome unknown).
        """
        env: dict[str, str] | None = None
        if req.env:
            env = dict(os.environ)
            env.update(req.env)
        proc = self._run("sbatch", self.sbatch_argv(req), input=req.script, env=env)
        if proc.returncode != 0:
            raise self._error("sbatch", proc)
        return parse_sbatch_output(proc.stdout)

    # ------------------------------------------------------------------ squeue

    def squeue(self, job_ids: Iterable[str]) -> dict[str, SlurmJobInfo]:
        """State of the given jobs (array base ids give all their tasks) in ONE squeue call.

        Jobs slurmctld no longer knows (purged after MinJobAge) are simply absent.
        Empty input: no call, ``{}``.
        """
        wanted = sorted({str(j).strip() for j in job_ids if str(j).strip()})
        if not wanted:
            return {}
        joined = ",".join(wanted)
        args = ["--noheader", "--states=all", f"--Format={SQUEUE_FORMAT}"]
        filter_locally = len(joined) > _MAX_JOBS_ARG
        if not filter_locally:
            args.append(f"--jobs={joined}")
        proc = self._run("squeue", args)
        if proc.returncode != 0:
            if "Invalid job id" in (proc.stderr or ""):
                return {}
            raise self._error("squeue", proc)
        result = parse_squeue(proc.stdout)
        if filter_locally:
            result = _filter(result, set(wanted))
        return result

    def squeue_named(self, name: str) -> dict[str, SlurmJobInfo]:
        """Every job slurmctld knows by this job name (any state), in one squeue call.

        How a launcher finds the jobs it submitted but could not record (a crash right after
        sbatch, or an sbatch that timed out).
        """
        args = ["--noheader", "--states=all", f"--name={name}", f"--Format={SQUEUE_FORMAT}"]
        proc = self._run("squeue", args)
        if proc.returncode != 0:
            raise self._error("squeue", proc)
        return parse_squeue(proc.stdout)

    def time_left(self, job_ids: Iterable[str]) -> dict[str, float]:
        """Seconds left of each running job's time limit (its allocation's real end, whatever
        its submitted limit was: a changed limit counts), in one squeue call. Jobs without a
        limit, pending or unknown to Slurm are absent. SlurmError: squeue failed."""
        wanted = sorted({str(j).strip() for j in job_ids if str(j).strip()})
        if not wanted:
            return {}
        args = ["--noheader", "--states=running", f"--jobs={','.join(wanted)}", "--format=%i|%L"]
        proc = self._run("squeue", args)
        if proc.returncode != 0:
            if "Invalid job id" in (proc.stderr or ""):
                return {}
            raise self._error("squeue", proc)
        out: dict[str, float] = {}
        for line in proc.stdout.splitlines():
            ident, _, left = line.partition("|")
            seconds = parse_time_left(left)
            if ident.strip() and seconds is not None:
                out[ident.strip()] = seconds
        return out

    # ------------------------------------------------------------------ scancel

    def scancel(self, job_ids: Iterable[str], signal: str | int | None = None, *, full: bool = True) -> None:
        """Cancel (or, with ``signal``, signal) many jobs in one ``scancel`` call (chunked
        only past a safe argv length). Jobs already ended or purged are not an error.

        With a signal and ``full`` (default), the batch script is signalled too
        (``scancel --full``), not only the job's steps.
        """
        ids = sorted({str(j).strip() for j in job_ids if str(j).strip()})
        if not ids:
            return
        opts: list[str] = []
        if signal is not None:
            opts.append(f"--signal={signal}")
            if full:
                opts.append("--full")
        errors: list[str] = []
        for chunk in _chunks(ids, _MAX_ARGV_CHARS):
            proc = self._run("scancel", [*opts, *chunk])
            for line in (proc.stderr or "").splitlines():
                text = line.strip()
                if text and not any(b in text for b in _BENIGN_SCANCEL):
                    errors.append(text)
            if proc.returncode != 0 and not errors and not (proc.stderr or "").strip():
                errors.append(f"exit status {proc.returncode}")
        if errors:
            raise SlurmError("scancel failed: " + "; ".join(errors))

    # ------------------------------------------------------------------ misc

    def sinfo_ok(self, timeout: float = 5.0) -> bool:
        """True when the controller answers ``sinfo`` and a partition is up."""
        try:
            proc = self._run("sinfo", ["--noheader", "--format=%a"], timeout=timeout)
        except SlurmError:
            return False
        return proc.returncode == 0 and "up" in proc.stdout.split()

    def srun_step_argv(
        self,
        argv: Sequence[str],
        *,
        cpus: int = 1,
        memory_bytes: int | None = None,
        name: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> list[str]:
        """argv that starts ``argv`` as an exclusive job step inside the current allocation
        (slurm-steps backend). Building it issues no command (not counted)."""
        if not argv:
            raise ValueError("srun_step_argv needs a command")
        if cpus < 1:
            raise ValueError(f"cpus must be >= 1, got {cpus}")
        out = [
            self.command_path("srun"),
            "--exclusive",
            "--nodes=1",
            "--ntasks=1",
            f"--cpus-per-task={cpus}",
        ]
        if memory_bytes is not None:
            out.append(f"--mem={format_memory(memory_bytes)}")
        if name is not None:
            out.append(f"--job-name={name}")
        out.extend(extra_args)
        out.append("--")
        out.extend(argv)
        return out


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


def _filter(result: dict[str, SlurmJobInfo], wanted: set[str]) -> dict[str, SlurmJobInfo]:
    return {
        k: v
        for k, v in result.items()
        if k in wanted or v.raw_job_id in wanted or (v.array_job_id is not None and v.array_job_id in wanted)
    }


def _chunks(items: Sequence[str], max_chars: int) -> Iterable[list[str]]:
    """Split ids so each comma-joined chunk stays under ``max_chars``."""
    chunk: list[str] = []
    size = 0
    for item in items:
        if chunk and size + len(item) + 1 > max_chars:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(item) + 1
    if chunk:
        yield chunk
