"""Seeing: `corral status`, `corral read`, `corral tail`. Nothing here changes a journal."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from corral.cli.common import layout, root, supervisor_alive, user_errors


@click.command()
@click.argument("pattern", required=False)
@click.option("-v", "--verbose", count=True, help="-v sandbox and ports, -vv processes, -vvv every run.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (see README).")
@click.option("--jobs", "show_jobs", is_flag=True, help="List the jobs of an ensemble.")
@click.option(
    "--state", "job_state", default=None, help="With --jobs: only jobs in this state (e.g. failed)."
)
@user_errors
def status(pattern: str | None, verbose: int, as_json: bool, show_jobs: bool, job_state: str | None) -> None:
    """Tasks and ensembles under the root, with their state."""
    import fnmatch

    from corral.cli.tables import print_status
    from corral.supervisor.layout import list_ids

    _check_job_state(job_state)
    base = root()
    ids = list_ids(base)
    if pattern:
        ids = [i for i in ids if fnmatch.fnmatch(i, pattern) or i == pattern]
    views = _views(base, ids, show_jobs, job_state) if ids else []
    _journal_problems(base, views)
    _pilot_workers(base, views)
    if as_json:
        import sys

        import msgspec

        # msgspec formats in C: 100,000 job rows in milliseconds, where json.dumps(indent=2)
        # (pure Python once indent is set) took a second; the bytes go out as they are
        # (click.echo would decode and encode the 15 MB of a 100,000-job list again)
        text = msgspec.json.format(msgspec.json.encode(views, enc_hook=str), indent=2)
        sys.stdout.flush()
        sys.stdout.buffer.write(text + b"\n")
        sys.stdout.buffer.flush()
        return
    print_status(views, verbose, show_jobs)
    for v in views:
        for w in v.get("workers", ()):
            idle = "" if w.get("idle_since") is None else f", idle for {time.time() - w['idle_since']:.0f} s"
            click.echo(
                f"{v['id']}: pilot worker {w.get('slurm_id')} on {w.get('host') or '?'}: {w.get('state')}, "
                f"{w.get('running', 0)} running{idle}"
            )
        if v.get("journal_error"):
            click.echo(f"{v['id']}: cannot write its journal ({v['journal_error']}): launching nothing new")


def _pilot_workers(base: Path, views: list[dict[str, Any]]) -> None:
    """An ensemble on pilot workers: its launcher's view of them (ROOT/ID/pilot/workers.json,
    display only) as `workers`: Slurm id, host, state, jobs running, idle since."""
    import json

    for v in views:
        if v.get("kind") != "ensemble":  # a status view (JSON): its text
            continue
        try:
            data = json.loads((base / v["id"] / "pilot" / "workers.json").read_bytes())
            workers = data["workers"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(workers, list):
            v["workers"] = [w for w in workers if isinstance(w, dict)]


def _journal_problems(base: Path, views: list[dict[str, Any]]) -> None:
    """A live supervisor that cannot write its journal (disk full) can only say so itself."""
    live = [v for v in views if v.get("supervised")]
    if not live:
        return  # the control client (msgspec) is not loaded for nothing
    from corral.supervisor import control
    from corral.supervisor.layout import Layout

    for v in live:
        try:
            answer = control.request(Layout(base, v["id"]).control, {"op": "ping"}, timeout=2.0)
        except (OSError, ValueError):
            continue
        if answer.get("journal"):
            v["journal_error"] = answer["journal"]


def _check_job_state(job_state: str | None) -> None:
    """A job state the user typed (any case): one line when it names none, before any read."""
    if job_state is None:
        return
    from corral.core.states import TaskState
    from corral.errors import UserError

    names = [state.value.lower() for state in TaskState]
    if job_state.lower() not in names:
        raise UserError(f"--state {job_state}: not a job state (one of {', '.join(names)})")


def _views(base: Path, ids: list[str], show_jobs: bool, job_state: str | None) -> list[dict[str, Any]]:
    from corral.journal import JournalCorrupt, JournalError, RecordRejected
    from corral.observe.views import snapshot_view, view
    from corral.supervisor.checkpoints import fold_journal
    from corral.supervisor.layout import Layout
    from corral.supervisor.session import SessionError

    views = []
    for task_id in ids:
        where = Layout(base, task_id)
        alive = supervisor_alive(where)
        if not show_jobs:
            snap = snapshot_view(where, alive)
            if snap is not None:
                views.append(snap)
                continue
        try:
            sup = fold_journal(where)
        except FileNotFoundError:
            continue  # removed meanwhile (corral gc)
        except (JournalError, SessionError) as exc:
            # one broken task never hides the others: it is listed with its one-line error
            bad = "CORRUPT" if isinstance(exc, JournalCorrupt | RecordRejected) else "UNREADABLE"
            views.append({"id": task_id, "state": bad, "error": str(exc)})
            continue
        views.append(view(sup, where, alive, jobs=show_jobs, job_state=job_state))
    return views


@click.command()
@click.argument("task_id", metavar="ID")
@click.option("--raw", is_flag=True, help="Every record as written, with its offset.")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def read(task_id: str, raw: bool, as_json: bool) -> None:
    """Replay the journal of ID and print its history."""
    from corral.cli.history import print_history, print_raw
    from corral.core.records import JournalKind
    from corral.supervisor.session import replay

    where = layout(task_id)
    if raw:
        print_raw(where, as_json)
        return
    sup, records = replay(where)
    nodes = []
    if sup.remote and sup.kind == JournalKind.TASK:  # a Slurm task's runs are in its node's journals
        from corral.supervisor.nodes import attempts, read_node

        for attempt in attempts(where.dir, 0):
            node = read_node(where.dir, 0, attempt.name)
            if node is not None:
                nodes.append((node.ident, node.records))
    print_history(records, as_json, nodes)


@click.command()
@click.argument("task_id", metavar="ID")
@click.argument("where", nargs=-1)
@click.option("--stderr", is_flag=True, help="Show stderr instead of stdout.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing while the run is alive.")
@click.option("-n", "--lines", default=0, help="Only the last N lines (0 = all).")
@user_errors
def tail(task_id: str, where: tuple[str, ...], stderr: bool, follow: bool, lines: int) -> None:
    """The log of the latest run: tail ID [PROCESS] for a task, tail ID JOB [PROCESS] for an ensemble."""
    from corral.cli.logview import tail as print_tail
    from corral.supervisor.checkpoints import fold_journal

    found = layout(task_id)
    sup = fold_journal(found)
    print_tail(sup, found, list(where), "stderr" if stderr else "stdout", follow, lines)
