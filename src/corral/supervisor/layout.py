"""Where a task's files live under the root directory. One place decides every path."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from corral.errors import UserError

# An id is one path component that no shell, glob or option parser reads as anything else:
# never empty, no '/', no '..', no newline, no leading '.', '-' or '+' (hidden files, a gc's
# trash, options).
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
ID_RULE = "letters, digits and . _ @ + - (at most 128), starting with a letter or a digit"


class InvalidId(UserError, ValueError):
    """An id that is not one safe path component (one line, exit status 2 from the CLI)."""


def default_root() -> Path:
    env = os.environ.get("CORRAL_ROOT")
    if env:
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "corral"


def valid_id(task_id: str) -> bool:
    # fullmatch: `$` would let a trailing newline through
    return isinstance(task_id, str) and _ID.fullmatch(task_id) is not None


def check_id(task_id: str) -> str:
    """The one id check every command and the Python API go through (Layout calls it)."""
    if not valid_id(task_id):
        raise InvalidId(f"{task_id!r}: not a valid id: use {ID_RULE}")
    return task_id


def new_id(name: str, given: str | None) -> str:
    """The id to use: the one given (checked, even when empty), else NAME-TIMESTAMP-PID."""
    import time

    if given is not None:
        return check_id(given)
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid() % 10000}"


@dataclass(frozen=True, slots=True)
class Layout:
    """The directory of one task or ensemble: ROOT/ID."""

    root: Path
    id: str

    def __post_init__(self) -> None:
        check_id(self.id)

    @property
    def dir(self) -> Path:
        return self.root / self.id

    @property
    def journal(self) -> Path:
        return self.dir / "journal"

    @property
    def sandbox(self) -> Path:
        return self.dir / "sandbox"

    @property
    def supervisor_log(self) -> Path:
        return self.dir / "supervisor.log"

    @property
    def reaper_log(self) -> Path:
        """The reapers' ledger of spawns and exit statuses (see supervisor/reaper.py)."""
        return self.dir / "reaper.log"

    @property
    def status_snapshot(self) -> Path:
        return self.dir / "status.json"

    @property
    def control(self) -> str:
        """The control socket; unix socket paths are limited to ~107 bytes, so long ones move."""
        path = str(self.dir / "control.sock")
        if len(path.encode()) < 100:
            return path
        import hashlib  # only for long paths; ~4 ms of every command's start-up otherwise

        digest = hashlib.sha1(path.encode()).hexdigest()[:16]
        return f"/tmp/corral-{digest}.sock"

    def job_dir(self, job: int, ensemble: bool) -> Path:
        return self.dir / "jobs" / str(job) if ensemble else self.dir

    @property
    def logs(self) -> Path:
        """Every run's stdout and stderr, side by side: one directory for the whole task or
        ensemble, so that starting a run creates files, not directories."""
        return self.dir / "logs"

    def log_file(self, job: int, ensemble: bool, process: str, run: int, stream: str) -> Path:
        """logs/PROCESS.RUN.STREAM for a task, logs/JOB.PROCESS.RUN.STREAM for an ensemble."""
        return self.logs / log_name(job if ensemble else None, process, run, stream)


def log_name(job: int | None, process: str, run: int, stream: str) -> str:
    return f"{process}.{run}.{stream}" if job is None else f"{job}.{process}.{run}.{stream}"


def parse_log_name(name: str, job: int | None, stream: str) -> tuple[str, int] | None:
    """(process, run) of a log file name made by log_name for this job and stream, else None.
    Process names may hold dots; the job comes first and the run number last."""
    prefix = "" if job is None else f"{job}."
    suffix = f".{stream}"
    if not (name.startswith(prefix) and name.endswith(suffix)):
        return None
    process, dot, run = name[len(prefix) : -len(suffix)].rpartition(".")
    if not dot or not process or not run.isdigit():
        return None
    return process, int(run)


def list_ids(root: Path) -> list[str]:
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    # valid ids never start with '.': a gc's trash (.gc-ID-...) is never listed; os.path, not
    # pathlib: a root of 10,000 tasks is listed at every `status`
    base = os.fspath(root)
    return [n for n in names if valid_id(n) and os.path.exists(os.path.join(base, n, "journal"))]
