"""Controlling a task or ensemble: kill, lose, pause, resume, recover.

Each works with a live supervisor (a request on its control socket) and without one (this
process takes the journal's lock and acts itself). On a task that already ended, kill, lose,
pause and resume all change nothing and say so alike: one line on stderr, exit status 2.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from corral.cli.common import (
    already_ended,
    ask,
    emit,
    finish,
    json_option,
    layout,
    supervisor_alive,
    user_errors,
)

if TYPE_CHECKING:
    from corral.supervisor.layout import Layout

ENDED = ("SUCCESS", "FAILED", "KILLED", "LOST")


def _report(task_id: str, op: str, job: int | None, state: str, as_json: bool) -> None:
    if as_json:
        emit({"id": task_id, "op": op, "job": job, "state": state})
    else:
        click.echo(f"{task_id}: {state}")


def _unsupervised(where: Layout, op: str) -> None:
    """Before acting without a supervisor: refuse a task that ended (nothing is changed)."""
    from corral.supervisor.checkpoints import fold_journal

    sup = fold_journal(where)
    if sup.terminal:
        raise already_ended(where.id, sup.state.value, op)


@click.command()
@click.argument("task_id", metavar="ID")
@click.option(
    "--grace",
    type=float,
    default=None,
    help="Seconds between TERM and KILL (default: the spec's kill_grace).",
)
@click.option("--job", type=int, default=None, help="Only this job of an ensemble.")
@json_option
@user_errors
def kill(task_id: str, grace: float | None, job: int | None, as_json: bool) -> None:
    """Kill ID gracefully (final processes still run). Works when its supervisor is dead."""
    from corral.backends.kinds import KINDS
    from corral.cli import progress
    from corral.core.records import Action, Request
    from corral.supervisor.run import supervise
    from corral.supervisor.session import take_over

    where = layout(task_id)
    if ask(where, {"op": "kill", "grace": grace, "job": job}) is not None:
        _report(task_id, "kill", job, wait_terminal(where, job), as_json)
        return
    _unsupervised(where, "kill")
    # nobody supervises it: recover here, kill, and supervise to the end (finalizers run)
    engine, _ = take_over(where, backends=KINDS)
    engine.record(Request(Action.KILL, time.time(), job=job, grace=grace))
    engine.writer.commit()
    state = supervise(engine, progress.Reporter(engine, quiet=True))
    _report(task_id, "kill", job, state.value if job is None else engine.sup.job_state(job).value, as_json)


def wait_terminal(where: Layout, job: int | None, timeout: float | None = None) -> str:
    """The state once the task (or `job`) ended, or when its supervisor is gone / at `timeout`."""
    from corral.supervisor.follow import WAKE_BOUND, Follower

    deadline = None if timeout is None else time.time() + timeout
    with Follower(where) as follower:
        while True:
            # liveness first, then the journal: a supervisor that was gone before this read
            # had committed everything it ever will, so the state read is its last word
            alive = supervisor_alive(where)
            sup = follower.refresh()  # only the records committed since the last look
            if job is not None and sup.job_state(job).value in ENDED:
                return sup.job_state(job).value
            if sup.terminal or not alive:
                return sup.state.value
            if deadline is not None and time.time() > deadline:
                return sup.state.value
            # woken by a commit, or by the kernel closing a dead supervisor's files
            follower.wait(WAKE_BOUND if deadline is None else min(WAKE_BOUND, deadline - time.time()))


@click.command()
@click.argument("task_id", metavar="ID")
@json_option
@user_errors
def lose(task_id: str, as_json: bool) -> None:
    """Give up on ID: kill every live process tree, run no finalizers, mark it LOST."""
    from corral.backends.kinds import KINDS
    from corral.supervisor.session import take_over

    where = layout(task_id)
    if ask(where, {"op": "lose"}) is not None:
        _report(task_id, "lose", None, wait_terminal(where, None, timeout=30), as_json)
        return
    _unsupervised(where, "lose")
    engine, _ = take_over(where, backends=KINDS)
    engine.lose(time.time())
    engine.writer.commit()
    engine.writer.close()
    _report(task_id, "lose", None, engine.sup.state.value, as_json)


def _pause_resume(op: str, task_id: str, process: str | None, job: int | None, as_json: bool) -> None:
    from corral.backends.kinds import KINDS
    from corral.core.records import Action, Request
    from corral.supervisor.session import take_over

    where = layout(task_id)
    answer: dict[str, Any] = {"id": task_id, "op": op, "job": job, "process": process}
    if ask(where, {"op": op, "process": process, "job": job}) is not None:
        if as_json:
            emit(answer | {"supervised": True})
        else:
            click.echo(f"{task_id}: {op} requested")
        return
    _unsupervised(where, op)
    # no supervisor: take the lock just long enough to stop/continue the trees and record it
    engine, _ = take_over(where, backends=KINDS)
    engine.record(Request(Action(op), time.time(), job=job, process=process))
    engine.apply_pauses()
    engine.writer.close()
    if as_json:
        emit(answer | {"supervised": False})
    else:
        click.echo(f"{task_id}: {op}d (no supervisor is running; 'corral recover {task_id}' carries on)")


@click.command()
@click.argument("task_id", metavar="ID")
@click.argument("process", required=False)
@click.option("--job", type=int, default=None)
@json_option
@user_errors
def pause(task_id: str, process: str | None, job: int | None, as_json: bool) -> None:
    """Stop (SIGSTOP) the process trees of ID, or of one PROCESS. Paused time is not timed."""
    _pause_resume("pause", task_id, process, job, as_json)


@click.command()
@click.argument("task_id", metavar="ID")
@click.argument("process", required=False)
@click.option("--job", type=int, default=None)
@json_option
@user_errors
def resume(task_id: str, process: str | None, job: int | None, as_json: bool) -> None:
    """Continue (SIGCONT) what `pause` stopped."""
    _pause_resume("resume", task_id, process, job, as_json)


@click.command()
@click.argument("task_id", metavar="ID")
@click.option("--force", is_flag=True, help="Stop a live but stuck supervisor first (SIGKILL).")
@click.option("--detach", is_flag=True, help="Recover, then supervise in the background.")
@click.option("-q", "--quiet", is_flag=True)
@json_option
@user_errors
def recover(task_id: str, force: bool, detach: bool, quiet: bool, as_json: bool) -> None:
    """Take control of ID after its supervisor died: re-attach, recover exits, carry on."""
    from corral.backends.kinds import KINDS
    from corral.cli.run import detached
    from corral.supervisor.run import detach as start_detached
    from corral.supervisor.session import take_over

    where = layout(task_id)
    if detach:
        start = start_detached(where, lambda: take_over(where, force=force, backends=KINDS)[0])
        detached(task_id, start, as_json)
        return
    engine, counts = take_over(where, force=force, backends=KINDS)
    if not quiet:
        click.echo(
            f"{task_id}: {counts['attached']} re-attached, {counts['recovered']} exit codes recovered, "
            f"{counts['lost']} lost",
            err=True,
        )
    recovered = {k: counts[k] for k in ("attached", "recovered", "lost")}
    finish(engine, quiet, as_json, extra={"recovered": recovered})
