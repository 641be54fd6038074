"""What the CLI prints: status tables, histories, logs, progress. No decisions here."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from corral.core.records import Opened, Record, RunUpdate, Signal, Transition, decode, to_json
from corral.core.supervision import ENSEMBLE, Supervision
from corral.errors import UserError
from corral.journal import RawFrame, iter_raw

# the views status --json prints are the observer's too: built in one place, corral/observe/views.py
from corral.observe.views import job_counts as job_counts
from corral.observe.views import snapshot_view as snapshot_view
from corral.observe.views import view as view
from corral.supervisor import proc
from corral.supervisor.layout import Layout, parse_log_name


def _short(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def print_status(views: list[dict[str, Any]], verbose: int, show_jobs: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    if not views:
        console.print("no tasks")
        return
    table = Table(box=None, pad_edge=False)
    for col in ("ID", "KIND", "STATE", "STARTED", "FINISHED", "DETAIL"):
        table.add_column(col)
    for v in views:
        detail = ""
        if v.get("kind") == "ensemble":
            j = v["jobs"]
            detail = (
                f"{j['succeeded']}/{j['total']} done, {j['running']} running, "
                f"{j['failed']} failed, {j['pending']} pending"
            )
        elif v.get("processes"):
            detail = " ".join(
                f"{p['name']}:{p['runs'][-1]['state'] if p['runs'] else 'WAITING'}" for p in v["processes"]
            )
        if v.get("error"):
            detail = v["error"]
        table.add_row(
            v["id"],
            v.get("kind", "?"),
            v["state"],
            _short_iso(v.get("started_at")),
            _short_iso(v.get("finished_at")),
            detail,
        )
    console.print(table)
    for v in views:
        if verbose >= 1:
            console.print(
                f"\n[bold]{v['id']}[/bold]  dir {v.get('dir')}  sandbox {v.get('sandbox')}  "
                f"ports {v.get('ports') or '-'}  "
                f"supervisor {'pid ' + str(v.get('supervisor_pid')) if v.get('supervised') else 'none'}"
            )
        if verbose >= 2 and v.get("processes"):
            pt = Table(box=None, pad_edge=False)
            for col in ("PROCESS", "RUN", "STATE", "PID", "EXIT", "START", "STOP", "REASON"):
                pt.add_column(col)
            for p in v["processes"]:
                runs = p["runs"] if verbose >= 3 else p["runs"][-1:]
                if not runs:
                    pt.add_row(p["name"], "-", "WAITING", "", "", "", "", "")
                for r in runs:
                    pt.add_row(
                        p["name"],
                        str(r["run"]),
                        r["state"],
                        str(r["pid"] or ""),
                        "" if r["exit_code"] is None else str(r["exit_code"]),
                        _short_iso(r["started_at"]),
                        _short_iso(r["finished_at"]),
                        r["reason"] or "",
                    )
            console.print(pt)
        if show_jobs and v.get("job_list") is not None:
            jt = Table(box=None, pad_edge=False)
            for col in ("JOB", "STATE", "ATTEMPTS", "EXIT", "PARAMS"):
                jt.add_column(col)
            for row in v["job_list"]:
                jt.add_row(
                    str(row["job"]),
                    row["state"],
                    str(row["attempts"]),
                    "" if row["exit_code"] is None else str(row["exit_code"]),
                    " ".join(f"{k}={val}" for k, val in row["params"].items()),
                )
            console.print(jt)


def _short_iso(value: str | None) -> str:
    if not value:
        return "-"
    return value[:19].replace("T", " ")


def print_raw(layout: Layout, as_json: bool) -> None:
    """Every frame with its offset; damaged stretches and undecodable records say so and go on."""
    for frame in iter_raw(layout.journal):
        rec, kind, problem = _raw_record(frame)
        if rec is not None:
            if as_json:
                click.echo(json.dumps({"offset": frame.offset, **to_json(rec)}, default=str))
            else:
                click.echo(f"{frame.offset:>10}  {rec!r}")
        elif as_json:
            fields = {"offset": frame.offset, "type": kind, "problem": problem, "length": frame.length}
            click.echo(json.dumps(fields))
        else:
            click.echo(f"{frame.offset:>10}  {kind} ({problem}, {frame.length} bytes)")


def _raw_record(frame: RawFrame) -> tuple[Record | None, str, str]:
    """The frame's record, or why there is none: CORRUPT, TORN or UNDECODABLE and the cause."""
    if not frame.crc_ok:
        return None, "TORN" if frame.torn else "CORRUPT", frame.problem or "crc mismatch"
    try:
        return decode(frame.payload), "", ""
    except Exception as exc:  # a valid frame holding a record this version cannot decode
        return None, "UNDECODABLE", str(exc) or type(exc).__name__


def describe(rec: Record) -> str:
    if isinstance(rec, Opened):
        return f"opened {rec.kind} {rec.id} on {rec.host}"
    if isinstance(rec, Transition):
        who = "ensemble" if rec.job == ENSEMBLE else f"job {rec.job}"
        extra = [f"exit {rec.exit_code}"] if rec.exit_code is not None else []
        extra += [rec.reason] if rec.reason else []
        reason = f" ({', '.join(extra)})" if extra else ""
        attempt = f" attempt {rec.attempt + 1}" if rec.attempt else ""
        return f"{who}{attempt} -> {rec.state}{reason}"
    if isinstance(rec, RunUpdate):
        extra = []
        if rec.pid:
            extra.append(f"pid {rec.pid}")
        if rec.exit_code is not None:
            extra.append(f"exit {rec.exit_code}")
        if rec.reason:
            extra.append(rec.reason)
        return f"job {rec.job} {rec.process}[{rec.run}] -> {rec.state}" + (
            f" ({', '.join(extra)})" if extra else ""
        )
    if isinstance(rec, Signal):
        name = proc.SIGNAL_NAMES.get(rec.sig, rec.sig)
        return f"job {rec.job} {rec.process}[{rec.run}] <- {name} ({rec.reason})"
    name = type(rec).__name__
    fields = ", ".join(f"{f}={getattr(rec, f)!r}" for f in rec.__struct_fields__ if f != "at")
    return f"{name.lower()} {fields}"


def print_history(records: list[Record], as_json: bool) -> None:
    for rec in records:
        if as_json:
            click.echo(json.dumps(to_json(rec), default=str))
            continue
        text = describe(rec)
        at = getattr(rec, "at", None)
        click.echo(f"{_short(at)}  {text}")


def tail(sup: Supervision, layout: Layout, where: list[str], stream: str, follow: bool, lines: int) -> None:
    ensemble = sup.kind == "ensemble"
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
        # a Slurm job's runs are in its node journal; its logs are on the shared disk
        return _tail_disk(layout, job, where[0] if where else None, stream, lines)
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
    _print_file(path, lines, follow, _run_live(layout, job, name, number) if follow else None)


def _tail_disk(layout: Layout, job: int, process: str | None, stream: str, lines: int) -> None:
    """The newest log of a job that is not in memory: local jobs log to logs/JOB.PROCESS.RUN.*,
    Slurm jobs to slurm/JOB/SLURM_ID/logs/PROCESS.RUN.* (a task of their own on the node)."""
    places: list[tuple[Path, int | None]] = [(layout.logs, job)]
    places += [(logs, None) for logs in (layout.dir / "slurm" / str(job)).glob("*/logs")]
    found = []
    for logs, prefix in places:
        pattern = f"*.{stream}" if prefix is None else f"{prefix}.*.{stream}"
        for path in logs.glob(pattern):
            parsed = parse_log_name(path.name, prefix, stream)
            if parsed is not None and (process is None or parsed[0] == process):
                found.append((path.stat().st_mtime, parsed[1], path))
    if not found:
        raise UserError(f"{layout.id}: job {job} has no logs")
    _print_file(max(found)[2], lines, False, lambda: False)


def _run_live(layout: Layout, job: int, process: str, number: int) -> Any:
    """A check of whether the run is alive that reads only the journal's new records."""
    from corral.supervisor.follow import Follower

    follower = Follower(layout)

    def live() -> bool:
        rt = follower.refresh().jobs.get(job)
        run = None if rt is None else rt.find_run(process, number)
        return run is not None and run.live

    return live


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
    with open(path, "rb") as f:
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


class Reporter:
    """Progress while `corral run` supervises: run events for a task, a bar for an ensemble."""

    def __init__(self, engine: Any, quiet: bool = False) -> None:
        self.engine = engine
        self.quiet = quiet
        self.ensemble = engine.ensemble
        self.tty = sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
        self.last = 0.0
        self.started = time.time()
        self.done_at_start = 0
        self.shown: tuple[Any, ...] = ()
        self.progress: Any = None
        self.bar: Any = None
        if self.ensemble and not quiet and self.tty:
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self.progress.start()
            self.bar = self.progress.add_task(engine.layout.id, total=engine.sup.total, detail="")

    def record(self, rec: Record) -> None:
        if self.quiet or self.ensemble:
            return
        if isinstance(rec, RunUpdate | Transition | Signal):
            text = describe(rec)
            if isinstance(rec, RunUpdate | Signal):
                text = text.removeprefix("job 0 ")
            elif isinstance(rec, Transition):
                text = "task" + text.removeprefix("job 0")
            click.echo(f"{_short(rec.at)[11:]}  {text}", err=True)

    def turn(self, sup: Supervision) -> None:
        if self.quiet or not self.ensemble:
            return
        now = time.time()
        interval = 0.1 if self.tty else 5.0
        if now - self.last < interval and not sup.terminal:
            return
        c = job_counts(sup)
        finished = c["succeeded"] + c["failed"] + c["killed"] + c["lost"]
        shown = (finished, c["running"], sup.state)
        if shown == self.shown:
            return
        self.shown = shown
        self.last = now
        elapsed = max(1e-6, now - self.started)
        rate = finished / elapsed
        detail = f"run {c['running']} fail {c['failed'] + c['lost']} pend {c['pending']} {rate:.0f}/s"
        if self.progress is not None:
            self.progress.update(self.bar, completed=finished, total=sup.total, detail=detail)
        else:
            eta = (sup.total - finished) / rate if rate > 0 else float("inf")
            eta_text = f"{eta:.0f}s" if eta != float("inf") else "?"
            click.echo(f"{sup.id}: {finished}/{sup.total} done ({detail}), eta {eta_text}", err=True)

    def close(self) -> None:
        if self.progress is not None:
            self.turn(self.engine.sup)
            self.progress.stop()
        elif self.ensemble and not self.quiet:
            self.last = 0.0
            self.turn(self.engine.sup)


__all__ = ["Reporter", "print_history", "print_raw", "print_status", "tail", "view"]
