"""`corral tail`: the log of a run, found from the journal or, for finished jobs, on disk."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import IO, Any

from corral.cli.streamview import StreamedView
from corral.core.records import JournalKind
from corral.core.states import TASK_TERMINAL
from corral.core.supervision import Supervision
from corral.errors import UserError
from corral.supervisor.layout import Layout, parse_log_name


def tail(sup: Supervision, layout: Layout, where: list[str], stream: str, follow: bool, lines: int) -> None:
    ensemble = sup.kind == JournalKind.ENSEMBLE
    if ensemble:
        if not where:
            raise UserError("tail of an ensemble needs a JOB number: corral tail ID JOB [PROCESS]")
        try:
            job = int(where[0])
        except ValueError:
            raise UserError(f"{where[0]!r}: a job is a number") from None
        where = where[1:]
    else:
        job = 0
    if len(where) > 1:
        raise UserError("tail takes at most one PROCESS")
    if sup.remote and 0 <= job < sup.total:
        process = where[0] if where else None
        if follow and streams_output(sup):  # pilot workers send it to the launcher
            return _follow_streamed(layout, job, process, stream, lines)
        # a Slurm job's runs are in its node journal; its logs are on the shared disk
        return _tail_disk(layout, job, process, stream, lines)
    rt = sup.jobs.get(job)
    if rt is None:
        if ensemble and 0 <= job < sup.total:
            # finished jobs are not kept in memory: find the newest run on disk
            return _tail_disk(layout, job, where[0] if where else None, stream, lines)
        raise UserError(f"{layout.id}: no job {job}")
    candidates = [
        (r.launched_at, name, r.run)
        for name, p in rt.processes.items()
        for r in p.runs
        if not where or name == where[0]
    ]
    if where and where[0] not in rt.processes:
        raise UserError(f"{layout.id}: no process named {where[0]!r}")
    if not candidates:
        raise UserError(f"{layout.id}: no run yet")
    _, name, number = max(candidates)
    path = layout.log_file(job, ensemble, name, number, stream)
    if ensemble and not path.exists() and _print_streamed(layout, job, name, stream, lines):
        return
    _print_file(path, lines, follow, _run_live(layout, job, name, number) if follow else None)


def _tail_disk(layout: Layout, job: int, process: str | None, stream: str, lines: int) -> None:
    """The newest log of a job that is not in memory: local jobs log to logs/JOB.PROCESS.RUN.*,
    Slurm jobs to slurm/JOB/SLURM_ID/logs/PROCESS.RUN.* (a task of their own on the node)."""
    places: list[tuple[Path, int | None]] = [(layout.logs, job)]
    places += [(logs, None) for logs in (layout.dir / "slurm" / str(job)).glob("*/logs")]
    places += _pilot_places(layout, job)
    found = []
    for logs, prefix in places:
        pattern = f"*.{stream}" if prefix is None else f"{prefix}.*.{stream}"
        for path in logs.glob(pattern):
            parsed = parse_log_name(path.name, prefix, stream)
            if parsed is not None and (process is None or parsed[0] == process):
                found.append((path.stat().st_mtime, parsed[1], path))
    if not found:
        if _print_streamed(layout, job, process, stream, lines):
            return
        raise UserError(f"{layout.id}: job {job} has no logs")
    _print_file(max(found)[2], lines, False, lambda: False)


def _pilot_places(layout: Layout, job: int) -> list[tuple[Path, int | None]]:
    """Where pilot workers (without stream_logs) logged JOB's latest attempt: each worker's
    logs/ under its own number for the job, from its ledger's rows {"job": J, "attempt": A}."""
    from corral.core.records import JobsAdded, decode
    from corral.journal import JournalError, read_journal

    found: list[tuple[int, Path, int]] = []
    pilot = layout.dir / "pilot"
    for ledger in sorted(pilot.glob("*/journal")) if pilot.is_dir() else ():
        try:
            payloads = read_journal(ledger).payloads
        except (JournalError, OSError):
            continue  # unreadable: its logs are not found here
        for payload in payloads:
            try:
                rec = decode(payload)
            except ValueError:
                continue
            if not isinstance(rec, JobsAdded):
                continue
            for index, row in enumerate(rec.params):
                if isinstance(row, dict) and row.get("job") == job:
                    attempt = row.get("attempt", 0)
                    found.append(
                        (
                            attempt if isinstance(attempt, int) else 0,
                            ledger.parent / "logs",
                            rec.first + index,
                        )
                    )
    if not found:
        return []
    latest = max(attempt for attempt, _, _ in found)
    return [(logs, local) for attempt, logs, local in found if attempt == latest]


def _print_streamed(layout: Layout, job: int, process: str | None, stream: str, lines: int) -> bool:
    """A job whose output a pilot worker streamed to the launcher: its newest run's log from the
    workers' output files (supervisor/streamed.py). False when there is none."""
    from corral.supervisor.streamed import streamed_log

    found = streamed_log(layout.dir, job, process, stream)
    if found is None:
        return False
    reader, key = found
    data = reader.read(key)
    if lines > 0:
        data = b"".join(data.splitlines(keepends=True)[-lines:])
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return True


def streams_output(sup: Supervision) -> bool:
    """The ensemble's jobs run on pilot workers with stream_logs."""
    slurm = sup.opened.spec.get("slurm") if sup.opened is not None else None
    pilot = slurm.get("pilot") if isinstance(slurm, dict) else None
    return isinstance(pilot, dict) and bool(pilot.get("stream_logs"))


def _follow_streamed(layout: Layout, job: int, process: str | None, stream: str, lines: int) -> None:
    """tail -f of a job whose output its pilot worker streams to the launcher: what is there,
    then what arrives, until the job's current attempt ends. The launcher writes a job's output
    before it records its end, so the read after the end was seen has all of it."""
    from corral.supervisor.follow import Follower

    follower = Follower(layout)
    view = StreamedView(layout.dir, job, process, stream, lines)
    attempt: int | None = None
    while True:
        sup = follower.refresh()
        current = sup.summary(job).attempt
        moved_on = attempt is not None and current != attempt  # retried: the followed attempt ended
        ended = sup.terminal or sup.job_state(job) in TASK_TERMINAL or moved_on
        if attempt is None:
            if ended:  # nothing to follow: the newest log as it is
                return _tail_disk(layout, job, process, stream, lines)
            attempt = current
        view.place(sup.submitted.get(job, ""))
        view.show(attempt)
        if ended:
            return
        (view.watch or follower.watch).wait(_LIVENESS)


def _run_live(layout: Layout, job: int, process: str, number: int) -> Any:
    """A check of whether the run is alive that reads only the journal's new records."""
    from corral.supervisor.follow import Follower

    follower = Follower(layout)

    def live() -> bool:
        rt = follower.refresh().jobs.get(job)
        run = None if rt is None else rt.find_run(process, number)
        return run is not None and run.live

    return live


def _open_log(path: Path) -> IO[bytes]:
    """A run's log for reading; non-blocking to open, so a FIFO in its place is one line, not a
    `tail` that hangs until something writes to it."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"{path}: not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _print_file(path: Path, lines: int, follow: bool, live: Any) -> None:
    from corral.journal.watch import FileWatch

    out = sys.stdout.buffer
    watch = FileWatch(path.parent, (path.name,)) if follow and path.parent.exists() else None
    if follow:
        while not path.exists():  # the run may not have started writing yet
            if watch is None or not live():
                return
            watch.wait(_LIVENESS)
    elif not path.exists():
        return
    with _open_log(path) as f:
        data = f.read()
        if lines > 0:
            data = b"".join(data.splitlines(keepends=True)[-lines:])
        out.write(data)
        out.flush()
        if not follow or watch is None:
            return
        alive = True
        while True:
            chunk = f.read(65536)
            if chunk:
                out.write(chunk)
                out.flush()
                continue
            if not alive:
                return
            # woken by a write to the log; the run's end is looked for at least every
            # _LIVENESS seconds (one read of the journal's new records)
            if not watch.wait(_LIVENESS):
                alive = live()  # one last read after the run ended


_LIVENESS = 0.5
