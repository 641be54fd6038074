"""Commands meant for inside an ensemble's jobs: submit, wait, heartbeat.

The ensemble defaults to $CORRAL_TASK_ID and the job to $CORRAL_JOB, which every run gets.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import click

from corral.cli.common import (
    ask,
    emit,
    ensemble_id,
    json_option,
    layout,
    set_option,
    tcp_control,
    user_errors,
)
from corral.errors import UserError


@click.command()
@click.option("--ensemble", default=None, help="Ensemble id (default: $CORRAL_TASK_ID).")
@set_option
@click.option(
    "--jsonl", type=click.File("r"), default=None, help="One job per line: a JSON object of params."
)
@json_option
@user_errors
def submit(ensemble: str | None, sets: tuple[str, ...], jsonl: Any, as_json: bool) -> None:
    """Add jobs to a live ensemble; prints their job numbers."""
    from corral.supervisor.run import parse_assignments

    where = layout(ensemble_id(ensemble))
    params: list[dict[str, Any]] = []
    if jsonl is not None:
        for n, line in enumerate(jsonl, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise UserError(f"{jsonl.name}:{n}: not JSON ({exc})") from None
                if not isinstance(row, dict):
                    raise UserError(f"{jsonl.name}:{n}: a job is a JSON object of params")
                params.append(row)
    if sets:
        params.append(dict(parse_assignments(sets, "--set")))
    if not params:
        raise UserError("submit needs --set X=V (one job) or --jsonl FILE")
    answer = ask(where, {"op": "submit", "params": params})
    if answer is None:
        raise UserError(f"{where.id}: no live supervisor to submit to")
    if as_json:
        emit({"id": where.id, "jobs": list(answer["jobs"])})
    else:
        click.echo(" ".join(str(j) for j in answer["jobs"]))


@click.command()
@click.argument("jobs", nargs=-1, type=int, required=True)
@click.option("--ensemble", default=None, help="Ensemble id (default: $CORRAL_TASK_ID).")
@click.option("--timeout", type=float, default=None)
@json_option
@user_errors
def wait(jobs: tuple[int, ...], ensemble: str | None, timeout: float | None, as_json: bool) -> None:
    """Block until the given jobs end; exit 0 if all succeeded, 1 otherwise."""
    from corral.core.states import TaskState
    from corral.supervisor.follow import WAKE_BOUND, Follower

    where = layout(ensemble_id(ensemble))
    deadline = None if timeout is None else time.time() + timeout
    if tcp_control(where) is not None:
        _wait_remote(where, jobs, deadline, as_json)
    with Follower(where) as follower:
        while True:
            sup = follower.refresh()  # only the records committed since the last look
            states = {j: (sup.job_state(j) if j < sup.total else None) for j in jobs}
            if any(s is None for s in states.values()):
                raise UserError(f"{where.id}: no job {min(j for j, s in states.items() if s is None)}")
            done = all(
                s in (TaskState.SUCCESS, TaskState.FAILED, TaskState.KILLED, TaskState.LOST)
                and j not in sup.retry_due
                for j, s in states.items()
            )
            if done or sup.terminal:
                failed = [j for j, s in states.items() if s is not TaskState.SUCCESS]
                _print_states(where.id, {j: s.value if s else "?" for j, s in states.items()}, as_json)
                sys.exit(1 if failed else 0)
            if deadline is not None and time.time() > deadline:
                raise UserError(f"timed out waiting for jobs {' '.join(map(str, jobs))}")
            follower.wait(WAKE_BOUND if deadline is None else min(WAKE_BOUND, deadline - time.time()))


def _wait_remote(where: Any, jobs: tuple[int, ...], deadline: float | None, as_json: bool) -> None:
    """`wait` through the supervisor's TCP listener (the journal may be on another host)."""
    while True:
        answer = ask(where, {"op": "jobs", "jobs": list(jobs)})
        if answer is None:
            raise UserError(f"{where.id}: no live supervisor")
        states, retrying = answer["states"], answer["retrying"]
        if None in states:
            raise UserError(f"{where.id}: no job {jobs[states.index(None)]}")
        ended = ("SUCCESS", "FAILED", "KILLED", "LOST")
        if answer["terminal"] or all(s in ended and not r for s, r in zip(states, retrying, strict=True)):
            _print_states(where.id, dict(zip(jobs, states, strict=True)), as_json)
            sys.exit(0 if all(s == "SUCCESS" for s in states) else 1)
        if deadline is not None and time.time() > deadline:
            raise UserError(f"timed out waiting for jobs {' '.join(map(str, jobs))}")
        time.sleep(0.2)  # a poll over the network: the journal is not here to follow


def _print_states(ensemble: str, states: dict[int, str], as_json: bool) -> None:
    if as_json:
        rows = [{"job": j, "state": s} for j, s in states.items()]
        emit({"id": ensemble, "ok": all(s == "SUCCESS" for s in states.values()), "jobs": rows})
        return
    for j, s in states.items():
        click.echo(f"{j} {s}")


@click.command()
@click.option("--ensemble", default=None)
@click.option("--job", type=int, default=None, help="Default: $CORRAL_JOB.")
@user_errors
def heartbeat(ensemble: str | None, job: int | None) -> None:
    """Tell the supervisor this job is alive (for jobs with `heartbeat:`)."""
    where = layout(ensemble_id(ensemble))
    if job is None:
        env_job = os.environ.get("CORRAL_JOB")
        if env_job is None:
            raise UserError("heartbeat needs --job N (or run inside a job, where CORRAL_JOB is set)")
        job = int(env_job)
    if ask(where, {"op": "heartbeat", "job": job}) is None:
        raise UserError(f"{where.id}: no live supervisor")
