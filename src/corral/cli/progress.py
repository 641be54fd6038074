"""Progress while `corral run` supervises: run events for a task, a bar for an ensemble."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from corral.cli.history import describe_in_task, short_time
from corral.cli.tables import job_summary
from corral.core.records import Record, RunUpdate, Signal, Transition
from corral.core.supervision import Supervision
from corral.observe.views import job_counts


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
            click.echo(f"{short_time(rec.at)[11:]}  {describe_in_task(rec)}", err=True)

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
        if self.progress is not None:
            # the bar shows ended/total; the rest names each kind of end, as `status` does
            detail = (
                f"ok {c['succeeded']} failed {c['failed']} killed {c['killed']} lost {c['lost']} "
                f"running {c['running']} pending {c['pending']} {rate:.0f}/s"
            )
            self.progress.update(self.bar, completed=finished, total=sup.total, detail=detail)
        else:
            eta = (sup.total - finished) / rate if rate > 0 else float("inf")
            eta_text = f"{eta:.0f}s" if eta != float("inf") else "?"
            click.echo(f"{sup.id}: {job_summary(c)}, {rate:.0f}/s, eta {eta_text}", err=True)

    def close(self) -> None:
        if self.progress is not None:
            self.turn(self.engine.sup)
            self.progress.stop()
        elif self.ensemble and not self.quiet:
            self.last = 0.0
            self.turn(self.engine.sup)
