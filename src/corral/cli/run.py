"""Starting work: `corral run`, `corral simplerun`, and `corral inspect` (a dry run)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from corral.cli.common import (
    check_id,
    emit,
    finish,
    json_option,
    layout,
    port,
    port_option,
    root,
    set_option,
    supervisor_alive,
    user_errors,
)
from corral.errors import UserError

if TYPE_CHECKING:
    from corral.spec.model import Ensemble, Task
    from corral.supervisor.layout import Layout

GROUP_HELP = "Let the owner's group read the task's directory (0750, files 0640; default 0700/0600)."


@click.command()
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@click.option("--id", "task_id", default=None, help="Id of the task or ensemble (default: NAME-TIMESTAMP).")
@port_option
@set_option
@click.option("--detach", is_flag=True, help="Return at once; the supervisor runs in the background.")
@click.option(
    "--retry-failed",
    "retry_failed",
    metavar="ID",
    default=None,
    help="Rerun only the failed jobs of ensemble ID.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the final state.")
@click.option("--group-readable", "group", is_flag=True, help=GROUP_HELP)
@click.option(
    "--listen",
    metavar="HOST:PORT",
    default=None,
    help="Also take control requests over TCP (token in ROOT/ID/token; port 0: a free one).",
)
@json_option
@user_errors
def run(
    spec: str | None,
    task_id: str | None,
    ports: tuple[str, ...],
    sets: tuple[str, ...],
    detach: bool,
    retry_failed: str | None,
    quiet: bool,
    group: bool,
    listen: str | None,
    as_json: bool,
) -> None:
    """Run the task or ensemble in SPEC until it ends."""
    from corral import spec as specs
    from corral.backends.kinds import KINDS
    from corral.supervisor.layout import Layout, new_id
    from corral.supervisor.run import new_engine, parse_assignments, render_for_run

    if retry_failed is not None:
        _retry_failed(retry_failed, quiet, as_json)
    if spec is None:
        raise UserError("run needs a SPEC file (or --retry-failed ID)")
    if listen is not None:
        from corral.spec.address import parse_address

        try:
            parse_address(listen)
        except ValueError as exc:
            raise UserError(f"--listen {exc}") from None
    subject = specs.load_spec(spec)
    port_map = {k: port(k, v) for k, v in parse_assignments(ports, "-P")}
    params = dict(parse_assignments(sets, "--set"))
    task_id = new_id(subject.name, task_id)
    check_id(task_id)
    where = Layout(root(), task_id)
    prepared = render_for_run(subject, where, port_map, params, file=spec)
    context: dict[str, Any] = {"ports": port_map, "params": params, "spec_file": _recorded_path(spec)}
    if listen is not None:
        context["listen"] = listen  # in the journal: a recovery listens there again
    if detach:
        detached(task_id, detach_start(where, prepared, context, spec, group), as_json)
        return
    finish(new_engine(where, prepared, context, spec, group=group, backends=KINDS), quiet, as_json)


def _recorded_path(spec: str) -> str:
    """The spec's absolute path, which the journal records (as UTF-8 text)."""
    path = str(Path(spec).absolute())
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(
            f"{path!r}: the spec's path is not valid UTF-8 (the journal records it); rename it"
        ) from None
    return path


def detached(task_id: str, pid: int, as_json: bool) -> None:
    if as_json:
        emit({"id": task_id, "supervisor_pid": pid})
    else:
        click.echo(f"{task_id} supervised by pid {pid}")


def _retry_failed(ensemble: str, quiet: bool, as_json: bool) -> NoReturn:
    from corral.backends.kinds import KINDS
    from corral.core.records import Action, Request
    from corral.journal import lock_holder
    from corral.supervisor.session import take_over

    where = layout(ensemble)
    if supervisor_alive(where):
        raise UserError(
            f"{where.id}: still supervised by pid {lock_holder(where.journal)}; wait for it to end"
        )
    engine, _ = take_over(where, backends=KINDS)
    engine.record(Request(Action.RETRY_FAILED, time.time()))
    engine.writer.commit()
    finish(engine, quiet, as_json)


def detach_start(
    where: Layout, prepared: Task | Ensemble, context: dict[str, Any], spec: str | None, group: bool = False
) -> int:
    from corral.backends.kinds import KINDS
    from corral.supervisor.run import detach, new_engine

    return detach(where, lambda: new_engine(where, prepared, context, spec, group=group, backends=KINDS))


@click.command()
@click.option("--name", default="simple", help="Name of the task (and of its one process).")
@click.option("--id", "task_id", default=None)
@click.option("--detach", is_flag=True)
@click.option("--group-readable", "group", is_flag=True, help=GROUP_HELP)
@json_option
@click.argument("command", nargs=-1, required=True)
@user_errors
def simplerun(
    name: str, task_id: str | None, detach: bool, group: bool, as_json: bool, command: tuple[str, ...]
) -> None:
    """Run one command as a one-process task: corral simplerun -- CMD ARGS..."""
    from corral.spec import Process, validate_task
    from corral.spec.model import Task
    from corral.supervisor.layout import Layout, new_id
    from corral.supervisor.run import new_engine, render_for_run

    task = Task(name=name, processes=(Process(name=name, argv=tuple(command)),))
    validate_task(task)
    task_id = new_id(name, task_id)
    where = Layout(root(), task_id)
    prepared = render_for_run(task, where, {}, {}, file=None)
    if detach:
        detached(task_id, detach_start(where, prepared, {}, None, group), as_json)
        return
    finish(new_engine(where, prepared, {}, None, group=group), False, as_json)


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@port_option
@set_option
@click.option("--id", "task_id", default="TASK_ID")
@user_errors
def inspect(spec: str, ports: tuple[str, ...], sets: tuple[str, ...], task_id: str) -> None:
    """Validate SPEC and print the task as it would run (templates filled in)."""
    import msgspec

    from corral import spec as specs
    from corral.spec.model import Ensemble
    from corral.supervisor.layout import Layout
    from corral.supervisor.run import parse_assignments, render_for_run

    subject = specs.load_spec(spec)
    port_map = {k: port(k, v) for k, v in parse_assignments(ports, "-P")}
    params = dict(parse_assignments(sets, "--set"))
    where = Layout(root(), task_id)
    prepared = render_for_run(subject, where, port_map, params, file=spec)
    data = msgspec.to_builtins(prepared)
    if isinstance(prepared, Ensemble):
        from corral.spec import ParamSpace

        space = ParamSpace.from_ensemble(prepared, base_dir=str(Path(spec).absolute().parent), file=spec)
        data = {
            "ensemble": data,
            "jobs": len(space),
            "first_job": msgspec.to_builtins(_first_job(prepared, where, space)),
        }
    click.echo(json.dumps(data, indent=2))


def _first_job(ens: Ensemble, where: Layout, space: Any) -> Task | None:
    from corral.spec import job_task
    from corral.supervisor.folding import Jobs

    if len(space) == 0:
        return None
    return Jobs(where, ens, job_task(ens.job, ens.name), space).task_for(0)
