"""`corral gc`: remove what finished tasks and ensembles left, oldest first.

The rules (what may go, the lock, the trash names that make a killed gc harmless) live in
supervisor/gc.py; this module parses the options and prints what happened.
"""

from __future__ import annotations

import fnmatch
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from corral.core.states import TASK_TERMINAL, TaskState
from corral.errors import UserError


def _duration(text: str | None) -> float | None:
    from corral.spec.units import parse_duration

    if text is None:
        return None
    try:
        value = parse_duration(text)
    except ValueError:
        raise UserError(f"--older-than {text}: not a duration (e.g. 90s, 12h, 7d, 1:30:00)") from None
    if value < 0:
        raise UserError(f"--older-than {text}: a duration is not negative")
    return value


def _size(text: str | None) -> int | None:
    from corral.spec.units import parse_size

    if text is None:
        return None
    try:
        return parse_size(text)
    except ValueError:
        raise UserError(f"--max-space {text}: not a size (e.g. 500MB, 10GiB, 4096)") from None


def _states(names: tuple[str, ...]) -> frozenset[TaskState]:
    if not names:
        return TASK_TERMINAL
    wanted = set()
    ends = sorted(s.value.lower() for s in TASK_TERMINAL)
    for name in names:
        for part in name.split(","):
            try:
                state = TaskState(part.strip().upper())
            except ValueError:
                state = None
            if state not in TASK_TERMINAL:
                raise UserError(f"--state {part}: not a final state (one of {', '.join(ends)})")
            wanted.add(state)
    return frozenset(wanted)


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@click.command()
@click.argument("pattern", required=False)
@click.option("--older-than", "older_than", metavar="DURATION", help="Only what ended longer ago (7d, 12h).")
@click.option("--keep", type=int, default=None, metavar="N", help="Keep the N newest finished ones.")
@click.option("--max-space", "max_space", metavar="SIZE", help="Remove the oldest until all fit (10GB).")
@click.option(
    "--state", "states", multiple=True, metavar="STATE", help="Only those that ended so (failed,...)."
)
@click.option(
    "--what",
    default="all",
    metavar="all|logs|sandbox|history",
    help="logs, sandbox and history (old journals kept by compaction) keep the journal.",
)
@click.option("--dry-run", "dry_run", is_flag=True, help="Print what would go and the space it frees.")
@click.option("--json", "as_json", is_flag=True, help="A summary as one JSON object.")
def gc(
    pattern: str | None,
    older_than: str | None,
    keep: int | None,
    max_space: str | None,
    states: tuple[str, ...],
    what: str,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Remove what finished tasks and ensembles left (journals, logs, sandboxes), oldest first.

    Never touches one that has not finished or that a live supervisor holds. With no
    condition, everything finished that matches PATTERN (and --state) goes.
    """
    from corral.cli.common import fail

    try:
        summary = _collect(pattern, older_than, keep, max_space, states, what, dry_run)
    except UserError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        _print(summary)


def _collect(
    pattern: str | None,
    older_than: str | None,
    keep: int | None,
    max_space: str | None,
    states: tuple[str, ...],
    what: str,
    dry_run: bool,
) -> dict[str, Any]:
    from corral.supervisor import gc as collector
    from corral.supervisor.layout import list_ids

    if what not in collector.WHAT:
        raise UserError(f"--what {what}: one of {', '.join(collector.WHAT)}")
    if keep is not None and keep < 0:
        raise UserError(f"--keep {keep}: a count is not negative")
    conditions = collector.Conditions(_duration(older_than), keep, _size(max_space), _states(states), what)
    if not (conditions.any_goal or pattern or states or dry_run):
        raise UserError(
            "gc without a condition removes every finished task: name a PATTERN, --state, "
            "--older-than, --keep or --max-space (or look first with --dry-run)"
        )
    root: Path = click.get_current_context().find_root().obj
    ids = list_ids(root)
    if pattern:
        ids = [i for i in ids if fnmatch.fnmatchcase(i, pattern)]
    trash = 0 if dry_run else collector.clean_trash(root)
    survey = collector.survey(root, ids, conditions)
    chosen = collector.select(survey, conditions, time.time())
    crash = collector.Crash()
    removed: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for c in chosen:
        why = None if dry_run else collector.remove(root, c, conditions, crash)
        row: dict[str, Any] = {"id": c.id, "kind": c.kind, "state": c.state.value}
        row["finished_at"] = _iso(c.finished_at)
        row["bytes"] = c.size
        if why is None:
            removed.append(row)
        else:
            skipped.append({**row, "reason": why})
    return {
        "dry_run": dry_run,
        "what": what,
        "removed": removed,
        "skipped": skipped,
        "freed_bytes": sum(r["bytes"] for r in removed),
        "space_before": survey.total_space,
        "trash_cleaned": trash,
    }


def _iso(at: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds")


def _print(summary: dict[str, Any]) -> None:
    verb = "would remove" if summary["dry_run"] else "removed"
    what = "" if summary["what"] == "all" else f" ({summary['what']})"
    for row in summary["removed"]:
        ended = row["finished_at"][:19].replace("T", " ")
        click.echo(f"{verb}{what} {row['id']}  {row['state']}  ended {ended}  {human_size(row['bytes'])}")
    for row in summary["skipped"]:
        click.echo(f"kept {row['id']}: {row['reason']}", err=True)
    n = len(summary["removed"])
    click.echo(
        f"{verb} {n} task{'s' if n != 1 else ''}{what}, {human_size(summary['freed_bytes'])}"
        + (f"; {len(summary['skipped'])} kept" if summary["skipped"] else ""),
        err=False,
    )
    sys.stdout.flush()
