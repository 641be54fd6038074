"""Controlling a task or ensemble: kill, lose, pause, resume, recover.

Each works with a live supervisor (a request on its control socket) and without one (this
process takes the journal's lock and acts itself).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from corral.cli.common import ask, finish, layout, supervisor_alive, user_errors
from corral.errors import UserError

if TYPE_CHECKING:
    from corral.supervisor.layout import Layout


@click.command()
@click.argument("task_id", metavar="ID")
@click.option(
    "--grace",
    type=float,
    default=None,
    help="Seconds between TERM and KILL (default: the spec's kill_grace).",
)
@click.option("--job", type=int, default=None, help="Only this job of an ensemble.")
@user_errors
def kill(task_id: str, grace: float | None, job: int | None) -> None:
    """Kill ID gracefully (final processes still run). Works when its supervisor is dead."""
    from corral.cli import progress
    from corral.core.records import Action, Request
    from corral.supervisor.checkpoints import fold_journal
    from corral.supervisor.run import supervise
    from corral.supervisor.session import take_over

    where = layout(task_id)
    if ask(where, {"op": "kill", "grace": grace, "job": job}) is not None:
        state = wait_terminal(where, job)
        click.echo(f"{task_id}: {state}")
        return
    sup = fold_journal(where)
    if sup.terminal:
        click.echo(f"{task_id}: already {sup.state.value}")
        return
    # nobody supervises it: recover here, kill, and supervise to the end (finalizers run)
    engine, _ = take_over(where)
    engine.record(Request(Action.KILL, time.time(), job=job, grace=grace))
    engine.writer.commit()
    state_ = supervise(engine, progress.Reporter(engine, quiet=True))
    click.echo(f"{task_id}: {state_.value}")


def wait_terminal(where: Layout, job: int | None, timeout: float | None = None) -> str:
    from corral.supervisor.follow import WAKE_BOUND, Follower

    deadline = None if timeout is None else time.time() + timeout
    with Follower(where) as follower:
        while True:
            sup = follower.refresh()  # only the records committed since the last look
            if job is not None and sup.job_state(job).value in ("SUCCESS", "FAILED", "KILLED", "LOST"):
                return sup.job_state(job).value
            if sup.terminal:
                return sup.state.value
            if not supervisor_alive(where) and not sup.terminal:
                return sup.state.value
            if deadline is not None and time.time() > deadline:
                return sup.state.value
            # woken by a commit, or by the kernel closing a dead supervisor's files
            follower.wait(WAKE_BOUND if deadline is None else min(WAKE_BOUND, deadline - time.time()))


@click.command()
@click.argument("task_id", metavar="ID")
@user_errors
def lose(task_id: str) -> None:
    """Give up on ID: kill every live process tree, run no finalizers, mark it LOST."""
    from corral.supervisor.checkpoints import fold_journal
    from corral.supervisor.session import take_over

    where = layout(task_id)
    if ask(where, {"op": "lose"}) is not None:
        click.echo(f"{task_id}: {wait_terminal(where, None, timeout=30)}")
        return
    sup = fold_journal(where)
    if sup.terminal:
        click.echo(f"{task_id}: already {sup.state.value}")
        return
    engine, _ = take_over(where)
    engine.lose(time.time())
    engine.writer.commit()
    engine.writer.close()
    click.echo(f"{task_id}: {engine.sup.state.value}")


def _pause_resume(op: str, task_id: str, process: str | None, job: int | None) -> None:
    from corral.core.records import Action, Request
    from corral.supervisor.checkpoints import fold_journal
    from corral.supervisor.session import take_over

    where = layout(task_id)
    if ask(where, {"op": op, "process": process, "job": job}) is not None:
        click.echo(f"{task_id}: {op} requested")
        return
    sup = fold_journal(where)
    if sup.terminal:
        raise UserError(f"{task_id}: already {sup.state.value}")
    # no supervisor: take the lock just long enough to stop/continue the trees and record it
    engine, _ = take_over(where)
    engine.record(Request(Action(op), time.time(), job=job, process=process))
    engine.apply_pauses()
    engine.writer.close()
    click.echo(f"{task_id}: {op}d (no supervisor is running; 'corral recover {task_id}' carries on)")


@click.command()
@click.argument("task_id", metavar="ID")
@click.argument("process", required=False)
@click.option("--job", type=int, default=None)
@user_errors
def pause(task_id: str, process: str | None, job: int | None) -> None:
    """Stop (SIGSTOP) the process trees of ID, or of one PROCESS. Paused time is not timed."""
    _pause_resume("pause", task_id, process, job)


@click.command()
@click.argument("task_id", metavar="ID")
@click.argument("process", required=False)
@click.option("--job", type=int, default=None)
@user_errors
def resume(task_id: str, process: str | None, job: int | None) -> None:
    """Continue (SIGCONT) what `pause` stopped."""
    _pause_resume("resume", task_id, process, job)


@click.command()
@click.argument("task_id", metavar="ID")
@click.option("--force", is_flag=True, help="Stop a live but stuck supervisor first (SIGKILL).")
@click.option("--detach", is_flag=True, help="Recover, then supervise in the background.")
@click.option("-q", "--quiet", is_flag=True)
@user_errors
def recover(task_id: str, force: bool, detach: bool, quiet: bool) -> None:
    """Take control of ID after its supervisor died: re-attach, recover exits, carry on."""
    from corral.supervisor.run import detach as start_detached
    from corral.supervisor.session import take_over

    where = layout(task_id)
    if detach:
        pid = start_detached(where, lambda: take_over(where, force=force)[0])
        click.echo(f"{task_id} supervised by pid {pid}")
        return
    engine, counts = take_over(where, force=force)
    if not quiet:
        click.echo(
            f"{task_id}: {counts['attached']} re-attached, {counts['recovered']} exit codes recovered, "
            f"{counts['lost']} lost",
            err=True,
        )
    finish(engine, quiet)
