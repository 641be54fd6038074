"""`corral worker` (hidden): a pilot worker, what the pilot backend's sbatch script runs."""

from __future__ import annotations

import sys

import click

from corral.cli.common import root, user_errors


@click.command("worker", hidden=True)
@click.argument("task_id", metavar="ID")
@click.argument("name", metavar="WORKER")
@click.option("--cpus", type=click.IntRange(1), default=1)
@click.option("--memory", type=click.IntRange(0), default=0)
@click.option("--time", "walltime", type=click.FloatRange(min=1.0), default=3600.0)
@click.option("--idle-timeout", type=click.FloatRange(min=0.0), default=60.0)
@click.option("--stream-logs", is_flag=True, help="send the jobs' output to the launcher")
@click.option("--spool", type=click.IntRange(1 << 20), default=1 << 30, help="bytes of unsent output kept")
@user_errors
def worker(
    task_id: str,
    name: str,
    cpus: int,
    memory: int,
    walltime: float,
    idle_timeout: float,
    stream_logs: bool,
    spool: int,
) -> None:
    """On a compute node: take jobs of ensemble ID from its launcher and run them."""
    from corral.backends.pilot_worker import PilotWorker, WorkerShape
    from corral.supervisor.layout import check_id

    check_id(task_id)
    shape = WorkerShape(cpus, memory, walltime, idle_timeout, spool if stream_logs else None)
    state = PilotWorker(root(), task_id, name, shape).run()
    click.echo(f"{task_id} worker {name}: {state.value}", err=True)
    sys.exit(0)
