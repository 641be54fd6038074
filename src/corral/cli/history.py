"""A journal's history as text or JSON lines: `corral read` and the run events `corral run` prints."""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from datetime import datetime

import click

from corral.core.records import (
    Compacted,
    JournalKind,
    Opened,
    Record,
    RunUpdate,
    Signal,
    Transition,
    decode,
    to_json,
)
from corral.core.states import ENSEMBLE
from corral.journal import RawFrame, iter_raw
from corral.supervisor import proc
from corral.supervisor.layout import Layout


def short_time(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def print_raw(layout: Layout, as_json: bool) -> None:
    """Every frame with its offset; damaged stretches and undecodable records say so and go on."""
    for frame in iter_raw(layout.journal):
        rec, kind, problem = _raw_record(frame)
        if rec is not None:
            if as_json:
                click.echo(json.dumps({"offset": frame.offset, **to_json(rec)}, default=str))
            elif isinstance(rec, Compacted):  # its bytes are not for reading
                click.echo(f"{frame.offset:>10}  {_compacted_line(rec)} (part {rec.part + 1} of {rec.parts})")
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
        exit_ = f"exit {rec.exit_code}" if rec.exit_code is not None else ""
        attempt = f" attempt {rec.attempt + 1}" if rec.attempt else ""
        return f"{who}{attempt} -> {rec.state}{_details(exit_, rec.reason)}"
    if isinstance(rec, RunUpdate):
        pid = f"pid {rec.pid}" if rec.pid else ""
        exit_ = f"exit {rec.exit_code}" if rec.exit_code is not None else ""
        return f"job {rec.job} {rec.process}[{rec.run}] -> {rec.state}{_details(pid, exit_, rec.reason)}"
    if isinstance(rec, Signal):
        name = proc.SIGNAL_NAMES.get(rec.sig, rec.sig)
        return f"job {rec.job} {rec.process}[{rec.run}] <- {name} ({rec.reason})"
    name = type(rec).__name__
    # an enum field (Request.action) shows its journal value, as before the enums: action='kill'
    values = ((f, getattr(rec, f)) for f in rec.__struct_fields__ if f != "at")
    fields = ", ".join(f"{f}={v.value if isinstance(v, enum.Enum) else v!r}" for f, v in values)
    return f"{name.lower()} {fields}"


def describe_in_task(rec: Record) -> str:
    """describe() for a task's journal, whose one job needs no number: `a[0] -> RUNNING`,
    `task -> ACTIVE` (as the live output of `corral run` prints them)."""
    text = describe(rec)
    if isinstance(rec, RunUpdate | Signal):
        return text.removeprefix("job 0 ")
    if isinstance(rec, Transition) and rec.job == 0:
        return "task" + text.removeprefix("job 0")
    return text


def _details(*parts: str) -> str:
    """' (a, b)' of the parts that say something, each once: a reason often repeats the exit
    status ("exit 1"), which would read "FAILED (exit 1, exit 1)"."""
    shown = list(dict.fromkeys(p for p in parts if p))
    return f" ({', '.join(shown)})" if shown else ""


def print_history(
    records: list[Record], as_json: bool, nodes: Sequence[tuple[str, list[Record]]] = ()
) -> None:
    """The records in order; `nodes`: (Slurm id, records) of a Slurm task's node journals,
    merged in by time, each line saying which node journal it comes from."""
    task = bool(records) and isinstance(records[0], Opened) and records[0].kind == JournalKind.TASK
    merged: list[tuple[float, int, str | None, Record]] = [
        (getattr(rec, "at", 0.0) or 0.0, 0, None, rec) for rec in records
    ]
    for node_id, node_records in nodes:
        merged += [(getattr(rec, "at", 0.0) or 0.0, 1, node_id, rec) for rec in node_records]
    if nodes:
        merged.sort(key=lambda item: (item[0], item[1]))  # stable: each journal keeps its order
    for _, _, ident, rec in merged:
        if isinstance(rec, Compacted):  # one checkpoint, however many parts hold it
            if rec.part == 0:
                _print_compacted(rec, as_json)
            continue
        if as_json:
            fields = to_json(rec) if ident is None else {"node": ident, **to_json(rec)}
            click.echo(json.dumps(fields, default=str))
            continue
        text = describe_in_task(rec) if task or ident is not None else describe(rec)
        at = getattr(rec, "at", None)
        where = "" if ident is None else f"[node {ident}] "
        click.echo(f"{short_time(at)}  {where}{text}")


def _print_compacted(rec: Compacted, as_json: bool) -> None:
    if as_json:
        fields = {"type": "Compacted", "records": rec.records, "at": rec.at, "parts": rec.parts}
        click.echo(json.dumps(fields))
    else:
        click.echo(f"{short_time(rec.at)}  {_compacted_line(rec)}")


def _compacted_line(rec: Compacted) -> str:
    return f"compacted: {rec.records} records up to {short_time(rec.at)}"
