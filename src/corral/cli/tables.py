"""`corral status` tables. rich is imported only when there is a table to draw."""

from __future__ import annotations

import sys
from typing import Any

import click


def print_status(views: list[dict[str, Any]], verbose: int, show_jobs: bool) -> None:
    if not views:
        click.echo("no tasks")
        return
    from rich.console import Console

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    console.print(_overview(views))
    for v in views:
        if verbose >= 1:
            console.print(
                f"\n[bold]{v['id']}[/bold]  dir {v.get('dir')}  sandbox {v.get('sandbox')}  "
                f"ports {v.get('ports') or '-'}  "
                f"supervisor {'pid ' + str(v.get('supervisor_pid')) if v.get('supervised') else 'none'}"
            )
        if verbose >= 2 and v.get("processes"):
            console.print(_processes(v["processes"], every_run=verbose >= 3))
        if show_jobs and v.get("job_list") is not None:
            console.print(_jobs(v["job_list"]))


def _table(*columns: str) -> Any:
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in columns:
        table.add_column(col)
    return table


def detail(view: dict[str, Any]) -> str:
    """The DETAIL column: job counts of an ensemble, the latest run of each process of a task."""
    if view.get("error"):
        return str(view["error"])
    if view.get("kind") == "ensemble":  # a status view (JSON): its text
        return job_summary(view["jobs"])
    return " ".join(
        f"{p['name']}:{p['runs'][-1]['state'] if p['runs'] else 'WAITING'}"
        for p in view.get("processes") or ()
    )


def job_summary(jobs: dict[str, int]) -> str:
    """An ensemble's job counts in words; `status` and `run`'s progress both say it so.

    "ended" counts every job that reached an end (succeeded, failed, killed or lost), which is
    what a progress bar fills with; each kind of end is then named."""
    ended = jobs["succeeded"] + jobs["failed"] + jobs["killed"] + jobs["lost"]
    return (
        f"{ended}/{jobs['total']} ended ({jobs['succeeded']} succeeded, {jobs['failed']} failed, "
        f"{jobs['killed']} killed, {jobs['lost']} lost), {jobs['running']} running, {jobs['pending']} pending"
    )


def _overview(views: list[dict[str, Any]]) -> Any:
    table = _table("ID", "KIND", "STATE", "STARTED", "FINISHED", "DETAIL")
    for v in views:
        table.add_row(
            v["id"],
            v.get("kind", "?"),
            v["state"],
            _short_iso(v.get("started_at")),
            _short_iso(v.get("finished_at")),
            detail(v),
        )
    return table


def _processes(processes: list[dict[str, Any]], every_run: bool) -> Any:
    table = _table("PROCESS", "RUN", "STATE", "PID", "EXIT", "START", "STOP", "REASON")
    for p in processes:
        runs = p["runs"] if every_run else p["runs"][-1:]
        if not runs:
            table.add_row(p["name"], "-", "WAITING", "", "", "", "", "")
        if every_run and p.get("runs_dropped"):
            table.add_row(p["name"], "...", f"{p['runs_dropped']} earlier runs not kept", "", "", "", "", "")
        for r in runs:
            table.add_row(
                p["name"],
                str(r["run"]),
                r["state"],
                _where(r),
                "" if r["exit_code"] is None else str(r["exit_code"]),
                _short_iso(r["started_at"]),
                _short_iso(r["finished_at"]),
                r["reason"] or "",
            )
    return table


def _where(run: dict[str, Any]) -> str:
    """PID, or PID@HOST for a run on another node (a Slurm task's)."""
    pid, host = run["pid"], run.get("host")
    return "" if not pid else f"{pid}@{host}" if host else str(pid)


def _jobs(rows: list[dict[str, Any]]) -> Any:
    table = _table("JOB", "STATE", "ATTEMPTS", "EXIT", "PARAMS")
    for row in rows:
        table.add_row(
            str(row["job"]),
            row["state"],
            str(row["attempts"]),
            "" if row["exit_code"] is None else str(row["exit_code"]),
            " ".join(f"{k}={val}" for k, val in row["params"].items()),
        )
    return table


def _short_iso(value: str | None) -> str:
    if not value:
        return "-"
    return value[:19].replace("T", " ")
