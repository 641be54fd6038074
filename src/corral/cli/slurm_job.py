"""`corral slurm-job` (hidden): the command the Slurm backend's sbatch script runs on a node."""

from __future__ import annotations

import os
import sys

import click

from corral.cli.common import root, user_errors


@click.command("slurm-job", hidden=True)
@click.argument("task_id", metavar="ID")
@click.argument("job", type=int)
@user_errors
def slurm_job(task_id: str, job: int) -> None:
    """On a compute node: supervise job JOB of ID (started by the Slurm backend's sbatch)."""
    import msgspec

    from corral.backends.slurm_layout import job_task_file, node_layout_root
    from corral.observe.nodereport import NodeReporter
    from corral.spec.model import Control, Task
    from corral.supervisor.access import published
    from corral.supervisor.layout import Layout
    from corral.supervisor.run import exit_status, supervise
    from corral.supervisor.session import create, take_over

    base = root()
    task = msgspec.json.decode(job_task_file(base, task_id, job).read_bytes(), type=Task)
    # on the node, the task runs here, and listens on nothing but its own socket
    task = msgspec.structs.replace(task, backend="local", control=Control())
    array, index = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    ident = f"{array}_{index}" if array and index else os.environ.get("SLURM_JOB_ID", "local")
    where = Layout(node_layout_root(base, task_id, job), ident)
    if where.journal.exists():
        engine, _ = take_over(where, force=True)  # Slurm restarted this very job: carry on
    else:
        engine = create(where, task, context={"ensemble": task_id, "job": job})
    parent = Layout(base, task_id)
    engine.public = {
        "CORRAL_ROOT": str(base),
        "CORRAL_TASK_ID": task_id,
        "CORRAL_JOB": str(job),
        "CORRAL_CONTROL": parent.control,
    }
    reachable = published(parent)  # the ensemble's supervisor listens on TCP: use that
    if reachable is not None:
        engine.public["CORRAL_CONTROL"], engine.public["CORRAL_TOKEN"] = reachable
    reporter = NodeReporter(where.dir)  # CPU and memory of the runs, for the observer
    reporter.start(engine)
    try:
        state = supervise(engine)
    finally:
        reporter.stop()
    click.echo(f"{task_id} job {job} ({ident}): {state.value}", err=True)
    sys.exit(exit_status(state))
