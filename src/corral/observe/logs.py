"""Byte ranges of a run's log, rotated backups included, opened without following symlinks.
A job whose pilot worker streamed its output has no log file; `read_streamed` serves it from
the worker's output file pair.

A log is ROOT/ID/logs/[JOB.]PROCESS.RUN.STREAM and its backups NAME.1, NAME.2... (copytruncate,
see supervisor/logs.py). Every path component below the root is opened with O_NOFOLLOW
relative to its parent, so a symlink planted in a task directory cannot make the server read
another file; only regular files are served.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from corral.core.records import JournalKind
from corral.core.task import TaskRuntime
from corral.journal.streamlog import Stream as StreamKind
from corral.journal.streamlog import StreamKey, StreamLogReader
from corral.observe.folds import Fold
from corral.supervisor.layout import log_name, parse_log_name
from corral.supervisor.streamed import OUTPUT, PILOT_DIR

MAX_CHUNK = 1024 * 1024
_NOFOLLOW = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW


class LogRefused(Exception):
    """Not served (a symlink, not a regular file): 403."""


class LogMissing(LookupError):
    """No such run or log file: 404."""


@dataclass(frozen=True)
class Located:
    process: str
    run: int
    name: str  # file name in its directory
    live: bool
    where: tuple[str, ...] = ("logs",)  # the directory, below ROOT/ID


def _open_dir(fold: Fold, parts: tuple[str, ...]) -> int:
    """ROOT/ID/parts... as a directory fd, no component followed if it is a symlink."""
    fd = os.open(fold.layout.dir, _NOFOLLOW | os.O_DIRECTORY)
    try:
        for part in parts:
            try:
                child = os.open(part, _NOFOLLOW | os.O_DIRECTORY, dir_fd=fd)
            except FileNotFoundError:
                raise LogMissing(f"{fold.layout.id}: no {'/'.join(parts)} yet") from None
            except OSError as exc:
                raise LogRefused(f"{fold.layout.id}: {part} refused ({exc.strerror})") from None
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _listdir(fold: Fold, parts: tuple[str, ...], dirs: bool = False) -> list[str]:
    """Names in ROOT/ID/parts (only the real directories with dirs=True); [] when missing."""
    try:
        fd = _open_dir(fold, parts)
    except LogMissing:
        return []
    try:
        with os.scandir(fd) as entries:
            return [e.name for e in entries if not dirs or e.is_dir(follow_symlinks=False)]
    finally:
        os.close(fd)


def locate(fold: Fold, job: int, process: str | None, run: int | None, stream: str) -> Located:
    """The log of run `run` of `process` in `job`; the latest when not given."""
    sup = fold.sup
    ensemble = sup.kind == JournalKind.ENSEMBLE
    if job >= sup.total or (not ensemble and job != 0):
        raise LogMissing(f"{fold.layout.id}: no job {job}")
    rt = sup.jobs.get(job)
    prefix = job if ensemble else None
    if not sup.remote and rt is not None and (candidate := _from_runtime(rt, process, run)) is not None:
        name, number, live = candidate
        return Located(name, number, log_name(prefix, name, number, stream), live)
    # a finished job of an ensemble is not kept in memory, and a Slurm job's runs are in its
    # node journal (its logs in slurm/JOB/SLURM_ID/logs, a task of its own): look on disk
    places: list[tuple[tuple[str, ...], int | None]] = [(("logs",), prefix)]
    if sup.remote:
        runs_of_job = _listdir(fold, ("slurm", str(job)), dirs=True)  # one per Slurm job id
        places = [(("slurm", str(job), ident, "logs"), None) for ident in runs_of_job]
    found = []
    for parts, file_prefix in places:
        for file in _listdir(fold, parts):
            parsed = parse_log_name(file, file_prefix, stream)
            if parsed and (process is None or parsed[0] == process) and (run is None or parsed[1] == run):
                mtime = _mtime(fold, parts, file) if sup.remote else 0.0
                found.append((mtime, parsed[1], parsed[0], file, parts))
    if not found:
        raise LogMissing(f"{fold.layout.id}: job {job} has no such log")
    _, number, name, file, parts = max(found)
    live = sup.remote and job in sup.live
    return Located(name, number, file, live, parts)


def _mtime(fold: Fold, parts: tuple[str, ...], file: str) -> float:
    """When a Slurm job ran more than once (requeued), its newest log wins."""
    fd = _open_dir(fold, parts)
    try:
        return os.stat(file, dir_fd=fd, follow_symlinks=False).st_mtime
    except OSError:
        return 0.0
    finally:
        os.close(fd)


def _from_runtime(rt: TaskRuntime, process: str | None, run: int | None) -> tuple[str, int, bool] | None:
    candidates = [
        (r.launched_at, name, r.run, r.live)
        for name, p in rt.processes.items()
        for r in p.runs
        if (process is None or name == process) and (run is None or r.run == run)
    ]
    if not candidates:
        return None
    _, name, number, live = max(candidates)
    return name, number, live


def read_range(
    fold: Fold, located: Located, rotated: int, offset: int | None, limit: int
) -> dict[str, object]:
    """Up to `limit` bytes from `offset` (None: the last `limit` bytes) of the log or backup."""
    fd = _open_dir(fold, located.where)
    file = located.name if rotated == 0 else f"{located.name}.{rotated}"
    try:
        try:
            log = os.open(file, _NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)  # a FIFO: refused below, not waited on
        except FileNotFoundError:
            raise LogMissing(f"{fold.layout.id}: no log file {file}") from None
        except OSError as exc:  # ELOOP: a symlink
            raise LogRefused(f"{fold.layout.id}: {file} refused ({exc.strerror})") from None
        backups = _backups(fd, located.name)
    finally:
        os.close(fd)
    try:
        st = os.fstat(log)
        if not stat.S_ISREG(st.st_mode):
            raise LogRefused(f"{fold.layout.id}: {file} is not a regular file")
        size = st.st_size
        start = max(0, size - limit) if offset is None else offset
        data = os.pread(log, limit, start) if start < size else b""
    finally:
        os.close(log)
    return {
        "file": file,
        "process": located.process,
        "run": located.run,
        "size": size,
        "offset": start,
        "next": start + len(data),
        "data": data.decode("utf-8", errors="replace"),
        "live": located.live,
        "rotated": backups,
    }


def _backups(dir_fd: int, name: str) -> list[dict[str, int]]:
    out = []
    for index in range(1, 1000):
        try:
            st = os.stat(f"{name}.{index}", dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            break
        out.append({"index": index, "size": st.st_size})
    return out


def read_streamed(
    fold: Fold, job: int, process: str | None, run: int | None, stream: str, offset: int | None, limit: int
) -> dict[str, object]:
    """A byte range of a job's log that pilot workers streamed to the launcher (one file pair
    per worker under ROOT/ID/pilot/WORKER/, journal/streamlog.py): the newest attempt and run
    that match. Directories are opened without following symlinks, and so are the files."""
    which = StreamKind.STDERR if stream == "stderr" else StreamKind.STDOUT
    found: list[tuple[tuple[int, int, int], str, StreamLogReader, StreamKey]] = []
    for worker in sorted(_listdir(fold, (PILOT_DIR,), dirs=True)):
        fd = _open_dir(fold, (PILOT_DIR, worker))
        try:
            reader = StreamLogReader(Path(OUTPUT), dir_fd=fd)
            if reader.refused:
                raise LogRefused(f"{fold.layout.id}: {PILOT_DIR}/{worker}: {reader.damage}")
            keys = [k for k in reader.logs() if k.job == job and k.stream == which]
            keys = [k for k in keys if process in (None, k.process) and run in (None, k.run)]
            if keys:
                key = max(keys, key=lambda k: (k.attempt, k.run))
                found.append(((key.attempt, key.run, len(found)), worker, reader, key))
        finally:
            os.close(fd)
    if not found:
        raise LogMissing(f"{fold.layout.id}: job {job} has no such log")
    _, worker, reader, key = max(found, key=lambda f: f[0])
    size = reader.size(key)
    start = max(0, size - limit) if offset is None else offset
    fd = _open_dir(fold, (PILOT_DIR, worker))
    try:
        reader.dir_fd = fd
        data = reader.read(key, start, limit)
    finally:
        os.close(fd)
    # a pilot job's runs are on its worker, not in our fold: it is live while the job is
    live = job in fold.sup.live if fold.sup.remote else _runs_live(fold.sup.jobs.get(job))
    return {
        "file": f"{PILOT_DIR}/{worker}/{OUTPUT}",
        "process": key.process,
        "run": key.run,
        "size": size,
        "offset": start,
        "next": start + len(data),
        "data": data.decode("utf-8", errors="replace"),
        "live": live,
        "rotated": [],
    }


def _runs_live(rt: TaskRuntime | None) -> bool:
    return rt is not None and bool(rt.live_runs())
