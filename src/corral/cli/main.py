"""The `corral` command: thin commands over spec, supervisor and journal.

Exit status: 0 success, 1 failed, 3 killed or lost, 2 bad input (one line on stderr, no
traceback). Reporting commands take `--json`; its shape is documented in the README.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from corral import spec as specs
from corral.cli import output
from corral.core.states import TaskState
from corral.errors import UserError
from corral.journal import JournalCorrupt, JournalError, JournalLocked, lock_holder
from corral.spec.errors import SpecError
from corral.spec.model import Ensemble, Task
from corral.supervisor import control
from corral.supervisor.layout import Layout, default_root, list_ids, valid_id
from corral.supervisor.run import (
    detach as start_detached,
)
from corral.supervisor.run import (
    exit_status,
    new_engine,
    parse_assignments,
    render_for_run,
    supervise,
)
from corral.supervisor.session import SessionError, replay, take_over

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"corral: {message}", err=True)
    sys.exit(code)


def user_errors(fn: F) -> F:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (SpecError, SessionError, UserError, JournalLocked, JournalCorrupt) as exc:
            fail(str(exc))
        except JournalError as exc:
            fail(str(exc))
        except FileNotFoundError as exc:
            fail(f"{exc.filename}: no such file")
        except BrokenPipeError:
            sys.exit(0)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of journals and logs (default: $CORRAL_ROOT, else ~/.local/state/corral).",
)
@click.version_option(package_name="corral")
@click.pass_context
def cli(ctx: click.Context, root: Path | None) -> None:
    """corral: run tasks and ensembles of processes, and never lose track of them."""
    ctx.obj = (root or default_root()).absolute()


def _root() -> Path:
    obj = click.get_current_context().obj
    assert isinstance(obj, Path)
    return obj


def _layout(task_id: str) -> Layout:
    if not valid_id(task_id):
        raise UserError(f"{task_id!r}: not a valid id (letters, digits, . _ @ + -)")
    layout = Layout(_root(), task_id)
    if not layout.journal.exists():
        raise UserError(f"{task_id}: no such task under {layout.root}")
    return layout


def _supervisor_alive(layout: Layout) -> bool:
    """A live supervisor holds the lock; ask the kernel (flock), not the pid file."""
    import fcntl

    lock = str(layout.journal) + ".lock"
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _ask(layout: Layout, message: dict[str, Any]) -> dict[str, Any] | None:
    """Send a request to the live supervisor; None when there is none."""
    if not _supervisor_alive(layout):
        return None
    try:
        answer = control.request(layout.control, message)
    except OSError:
        return None
    if not answer.get("ok"):
        raise UserError(f"{layout.id}: {answer.get('error', 'refused')}")
    return answer


# -- run ---------------------------------------------------------------------------------------


port_option = click.option(
    "-P", "--port", "ports", multiple=True, metavar="NAME=PORT", help="Bind {{ports.NAME}}."
)
set_option = click.option("--set", "sets", multiple=True, metavar="X=V", help="Bind {{params.X}}.")


@cli.command()
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
@user_errors
def run(
    spec: str | None,
    task_id: str | None,
    ports: tuple[str, ...],
    sets: tuple[str, ...],
    detach: bool,
    retry_failed: str | None,
    quiet: bool,
) -> None:
    """Run the task or ensemble in SPEC until it ends."""
    if retry_failed is not None:
        layout = _layout(retry_failed)
        if _supervisor_alive(layout):
            raise UserError(
                f"{layout.id}: still supervised by pid {lock_holder(layout.journal)}; wait for it to end"
            )
        engine, _ = take_over(layout)
        from corral.core.records import Request

        engine.record(Request("retry-failed", time.time()))
        engine.writer.commit()
        _finish(engine, quiet)
        return
    if spec is None:
        raise UserError("run needs a SPEC file (or --retry-failed ID)")
    subject = specs.load_spec(spec)
    port_map = {k: _port(k, v) for k, v in parse_assignments(ports, "-P")}
    params = dict(parse_assignments(sets, "--set"))
    task_id = task_id or f"{subject.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid() % 10000}"
    if not valid_id(task_id):
        raise UserError(f"{task_id!r}: not a valid id (letters, digits, . _ @ + -)")
    layout = Layout(_root(), task_id)
    prepared = render_for_run(subject, layout, port_map, params, file=spec)
    context = {"ports": port_map, "params": params, "spec_file": str(Path(spec).absolute())}
    if detach:
        pid = detach_start(layout, prepared, context, spec)
        click.echo(f"{task_id} supervised by pid {pid}")
        return
    engine = new_engine(layout, prepared, context, spec)
    _finish(engine, quiet)


def detach_start(layout: Layout, prepared: Task | Ensemble, context: dict[str, Any], spec: str | None) -> int:
    return start_detached(layout, lambda: new_engine(layout, prepared, context, spec))


def _port(name: str, value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise UserError(f"-P {name}={value}: a port is a number") from None
    if not 0 < port < 65536:
        raise UserError(f"-P {name}={value}: a port is between 1 and 65535")
    return port


def _finish(engine: Any, quiet: bool) -> None:
    reporter = output.Reporter(engine, quiet=quiet)
    state = supervise(engine, reporter)
    reporter.close()
    click.echo(f"{engine.layout.id}: {state.value}", err=quiet is False)
    sys.exit(exit_status(state))


@cli.command()
@click.option("--name", default="simple", help="Name of the task (and of its one process).")
@click.option("--id", "task_id", default=None)
@click.option("--detach", is_flag=True)
@click.argument("command", nargs=-1, required=True)
@user_errors
def simplerun(name: str, task_id: str | None, detach: bool, command: tuple[str, ...]) -> None:
    """Run one command as a one-process task: corral simplerun -- CMD ARGS..."""
    from corral.spec import Process, validate_task

    task = Task(name=name, processes=(Process(name=name, argv=tuple(command)),))
    validate_task(task)
    task_id = task_id or f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid() % 10000}"
    layout = Layout(_root(), task_id)
    prepared = render_for_run(task, layout, {}, {}, file=None)
    if detach:
        pid = detach_start(layout, prepared, {}, None)
        click.echo(f"{task_id} supervised by pid {pid}")
        return
    _finish(new_engine(layout, prepared, {}, None), False)


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@port_option
@set_option
@click.option("--id", "task_id", default="TASK_ID")
@user_errors
def inspect(spec: str, ports: tuple[str, ...], sets: tuple[str, ...], task_id: str) -> None:
    """Validate SPEC and print the task as it would run (templates filled in)."""
    import msgspec

    subject = specs.load_spec(spec)
    port_map = {k: _port(k, v) for k, v in parse_assignments(ports, "-P")}
    params = dict(parse_assignments(sets, "--set"))
    layout = Layout(_root(), task_id)
    prepared = render_for_run(subject, layout, port_map, params, file=spec)
    data = msgspec.to_builtins(prepared)
    if isinstance(prepared, Ensemble):
        from corral.spec import ParamSpace
        from corral.supervisor.session import supervision_for  # noqa: F401  (validates params)

        space = ParamSpace.from_ensemble(prepared, base_dir=str(Path(spec).absolute().parent))
        data = {
            "ensemble": data,
            "jobs": len(space),
            "first_job": msgspec.to_builtins(_first_job(prepared, layout, space)),
        }
    click.echo(json.dumps(data, indent=2))


def _first_job(ens: Ensemble, layout: Layout, space: Any) -> Task | None:
    from corral.spec import job_task
    from corral.supervisor.session import Jobs

    if len(space) == 0:
        return None
    return Jobs(layout, ens, job_task(ens.job, ens.name), space).task_for(0)


# -- seeing -----------------------------------------------------------------------------------


@cli.command()
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

    root = _root()
    ids = list_ids(root)
    if pattern:
        ids = [i for i in ids if fnmatch.fnmatch(i, pattern) or i == pattern]
    views = []
    for task_id in ids:
        layout = Layout(root, task_id)
        alive = _supervisor_alive(layout)
        if not show_jobs:
            snap = output.snapshot_view(layout, alive)
            if snap is not None:
                views.append(snap)
                continue
        try:
            sup, _ = replay(layout)
        except FileNotFoundError:
            continue  # removed meanwhile (corral gc)
        except (JournalError, SessionError) as exc:
            views.append({"id": task_id, "state": "UNREADABLE", "error": str(exc)})
            continue
        views.append(output.view(sup, layout, alive, jobs=show_jobs, job_state=job_state))
    if as_json:
        click.echo(json.dumps(views, indent=2, default=str))
        return
    output.print_status(views, verbose, show_jobs)


@cli.command()
@click.argument("task_id", metavar="ID")
@click.option("--raw", is_flag=True, help="Every record as written, with its offset.")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def read(task_id: str, raw: bool, as_json: bool) -> None:
    """Replay the journal of ID and print its history."""
    layout = _layout(task_id)
    if raw:
        output.print_raw(layout, as_json)
        return
    _, records = replay(layout)
    output.print_history(records, as_json)


@cli.command()
@click.argument("task_id", metavar="ID")
@click.argument("where", nargs=-1)
@click.option("--stderr", is_flag=True, help="Show stderr instead of stdout.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing while the run is alive.")
@click.option("-n", "--lines", default=0, help="Only the last N lines (0 = all).")
@user_errors
def tail(task_id: str, where: tuple[str, ...], stderr: bool, follow: bool, lines: int) -> None:
    """The log of the latest run: tail ID [PROCESS] for a task, tail ID JOB [PROCESS] for an ensemble."""
    layout = _layout(task_id)
    sup, _ = replay(layout)
    output.tail(sup, layout, list(where), "stderr" if stderr else "stdout", follow, lines)


# -- controlling ------------------------------------------------------------------------------


@cli.command()
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
    layout = _layout(task_id)
    if _ask(layout, {"op": "kill", "grace": grace, "job": job}) is not None:
        state = _wait_terminal(layout, job)
        click.echo(f"{task_id}: {state}")
        return
    sup, _ = replay(layout)
    if sup.terminal:
        click.echo(f"{task_id}: already {sup.state.value}")
        return
    # nobody supervises it: recover here, kill, and supervise to the end (finalizers run)
    engine, _ = take_over(layout)
    from corral.core.records import Request

    engine.record(Request("kill", time.time(), job=job, grace=grace))
    engine.writer.commit()
    state_ = supervise(engine, output.Reporter(engine, quiet=True))
    click.echo(f"{task_id}: {state_.value}")


def _wait_terminal(layout: Layout, job: int | None, timeout: float | None = None) -> str:
    deadline = None if timeout is None else time.time() + timeout
    while True:
        sup, _ = replay(layout)
        if job is not None and sup.job_state(job).value in ("SUCCESS", "FAILED", "KILLED", "LOST"):
            return sup.job_state(job).value
        if sup.terminal:
            return sup.state.value
        if not _supervisor_alive(layout) and not sup.terminal:
            return sup.state.value
        if deadline is not None and time.time() > deadline:
            return sup.state.value
        time.sleep(0.1)


@cli.command()
@click.argument("task_id", metavar="ID")
@user_errors
def lose(task_id: str) -> None:
    """Give up on ID: kill every live process tree, run no finalizers, mark it LOST."""
    layout = _layout(task_id)
    if _ask(layout, {"op": "lose"}) is not None:
        click.echo(f"{task_id}: {_wait_terminal(layout, None, timeout=30)}")
        return
    sup, _ = replay(layout)
    if sup.terminal:
        click.echo(f"{task_id}: already {sup.state.value}")
        return
    engine, _ = take_over(layout)
    engine.lose(time.time())
    engine.writer.commit()
    engine.writer.close()
    click.echo(f"{task_id}: {engine.sup.state.value}")


def _pause_resume(op: str, task_id: str, process: str | None, job: int | None) -> None:
    layout = _layout(task_id)
    if _ask(layout, {"op": op, "process": process, "job": job}) is not None:
        click.echo(f"{task_id}: {op} requested")
        return
    sup, _ = replay(layout)
    if sup.terminal:
        raise UserError(f"{task_id}: already {sup.state.value}")
    # no supervisor: take the lock just long enough to stop/continue the trees and record it
    engine, _ = take_over(layout)
    from corral.core.records import Request

    engine.record(Request(op, time.time(), job=job, process=process))
    engine.apply_pauses()
    engine.writer.close()
    click.echo(f"{task_id}: {op}d (no supervisor is running; 'corral recover {task_id}' carries on)")


@cli.command()
@click.argument("task_id", metavar="ID")
@click.argument("process", required=False)
@click.option("--job", type=int, default=None)
@user_errors
def pause(task_id: str, process: str | None, job: int | None) -> None:
    """Stop (SIGSTOP) the process trees of ID, or of one PROCESS. Paused time is not timed."""
    _pause_resume("pause", task_id, process, job)


@cli.command()
@click.argument("task_id", metavar="ID")
@click.argument("process", required=False)
@click.option("--job", type=int, default=None)
@user_errors
def resume(task_id: str, process: str | None, job: int | None) -> None:
    """Continue (SIGCONT) what `pause` stopped."""
    _pause_resume("resume", task_id, process, job)


@cli.command()
@click.argument("task_id", metavar="ID")
@click.option("--force", is_flag=True, help="Stop a live but stuck supervisor first (SIGKILL).")
@click.option("--detach", is_flag=True, help="Recover, then supervise in the background.")
@click.option("-q", "--quiet", is_flag=True)
@user_errors
def recover(task_id: str, force: bool, detach: bool, quiet: bool) -> None:
    """Take control of ID after its supervisor died: re-attach, recover exits, carry on."""
    layout = _layout(task_id)
    if detach:
        pid = start_detached(layout, lambda: take_over(layout, force=force)[0])
        click.echo(f"{task_id} supervised by pid {pid}")
        return
    engine, counts = take_over(layout, force=force)
    if not quiet:
        click.echo(
            f"{task_id}: {counts['attached']} re-attached, {counts['recovered']} exit codes recovered, "
            f"{counts['lost']} lost",
            err=True,
        )
    _finish(engine, quiet)


# -- from inside jobs ---------------------------------------------------------------------------


def _ensemble_id(ensemble: str | None) -> str:
    value = ensemble or os.environ.get("CORRAL_TASK_ID")
    if not value:
        raise UserError(
            "name the ensemble with --ensemble ID (or run inside a job, where CORRAL_TASK_ID is set)"
        )
    return value


@cli.command()
@click.option("--ensemble", default=None, help="Ensemble id (default: $CORRAL_TASK_ID).")
@set_option
@click.option(
    "--jsonl", type=click.File("r"), default=None, help="One job per line: a JSON object of params."
)
@user_errors
def submit(ensemble: str | None, sets: tuple[str, ...], jsonl: Any) -> None:
    """Add jobs to a live ensemble; prints their job numbers."""
    layout = _layout(_ensemble_id(ensemble))
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
    answer = _ask(layout, {"op": "submit", "params": params})
    if answer is None:
        raise UserError(f"{layout.id}: no live supervisor to submit to")
    click.echo(" ".join(str(j) for j in answer["jobs"]))


@cli.command()
@click.argument("jobs", nargs=-1, type=int, required=True)
@click.option("--ensemble", default=None, help="Ensemble id (default: $CORRAL_TASK_ID).")
@click.option("--timeout", type=float, default=None)
@user_errors
def wait(jobs: tuple[int, ...], ensemble: str | None, timeout: float | None) -> None:
    """Block until the given jobs end; exit 0 if all succeeded, 1 otherwise."""
    layout = _layout(_ensemble_id(ensemble))
    deadline = None if timeout is None else time.time() + timeout
    while True:
        sup, _ = replay(layout)
        states = {j: (sup.job_state(j) if j < sup.total else None) for j in jobs}
        if any(s is None for s in states.values()):
            raise UserError(f"{layout.id}: no job {min(j for j, s in states.items() if s is None)}")
        done = all(
            s in (TaskState.SUCCESS, TaskState.FAILED, TaskState.KILLED, TaskState.LOST)
            and j not in sup.retry_set()
            for j, s in states.items()
        )
        if done or sup.terminal:
            failed = [j for j, s in states.items() if s is not TaskState.SUCCESS]
            for j, s in states.items():
                click.echo(f"{j} {s.value if s else '?'}")
            sys.exit(1 if failed else 0)
        if deadline is not None and time.time() > deadline:
            raise UserError(f"timed out waiting for jobs {' '.join(map(str, jobs))}")
        time.sleep(0.2)


@cli.command()
@click.option("--ensemble", default=None)
@click.option("--job", type=int, default=None, help="Default: $CORRAL_JOB.")
@user_errors
def heartbeat(ensemble: str | None, job: int | None) -> None:
    """Tell the supervisor this job is alive (for jobs with `heartbeat:`)."""
    layout = _layout(_ensemble_id(ensemble))
    if job is None:
        env_job = os.environ.get("CORRAL_JOB")
        if env_job is None:
            raise UserError("heartbeat needs --job N (or run inside a job, where CORRAL_JOB is set)")
        job = int(env_job)
    if _ask(layout, {"op": "heartbeat", "job": job}) is None:
        raise UserError(f"{layout.id}: no live supervisor")


@cli.command("slurm-job", hidden=True)
@click.argument("task_id", metavar="ID")
@click.argument("job", type=int)
@user_errors
def slurm_job(task_id: str, job: int) -> None:
    """On a compute node: supervise job JOB of ID (started by the Slurm backend's sbatch)."""
    import msgspec

    from corral.backends.slurm import job_task_file, node_layout_root
    from corral.supervisor.session import create

    root = _root()
    task = msgspec.json.decode(job_task_file(root, task_id, job).read_bytes(), type=Task)
    task = msgspec.structs.replace(task, backend="local")  # on the node, the task runs here
    array, index = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    ident = f"{array}_{index}" if array and index else os.environ.get("SLURM_JOB_ID", "local")
    layout = Layout(node_layout_root(root, task_id, job), ident)
    if layout.journal.exists():
        engine, _ = take_over(layout, force=True)  # Slurm restarted this very job: carry on
    else:
        engine = create(layout, task, context={"ensemble": task_id, "job": job})
    parent = Layout(root, task_id)
    engine.public = {
        "CORRAL_ROOT": str(root),
        "CORRAL_TASK_ID": task_id,
        "CORRAL_JOB": str(job),
        "CORRAL_CONTROL": parent.control,
    }
    state = supervise(engine)
    click.echo(f"{task_id} job {job} ({ident}): {state.value}", err=True)
    sys.exit(exit_status(state))


def _add_commands() -> None:
    from corral.cli.gc import gc

    cli.add_command(gc)


_add_commands()


def main() -> None:
    cli(prog_name="corral")


if __name__ == "__main__":
    main()
