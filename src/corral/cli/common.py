"""Helpers shared by the command modules: the root, ids, user errors, the control socket.

Heavy parts (the supervisor, the journal, msgspec structs) are imported inside the functions
that need them, so a command pays only for what it uses.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from corral.errors import UserError

if TYPE_CHECKING:
    from corral.supervisor.layout import Layout

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"corral: {message}", err=True)
    sys.exit(code)


def _is_user_error(exc: Exception) -> bool:
    """Errors a user can fix. Their modules are looked up only once one was raised, so a
    command that never loaded the journal does not import it to catch its errors."""
    if isinstance(exc, UserError):
        return True
    from corral.journal import JournalError
    from corral.spec.errors import SpecError
    from corral.supervisor.session import SessionError

    return isinstance(exc, SpecError | SessionError | JournalError)


def user_errors(fn: F) -> F:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError as exc:
            fail(f"{exc.filename}: no such file")
        except PermissionError as exc:  # another user's task or root: one line, no traceback
            fail(f"{exc.filename or 'corral'}: permission denied (is it another user's task?)")
        except BrokenPipeError:
            sys.exit(0)
        except Exception as exc:
            if _is_user_error(exc):
                fail(str(exc))
            raise

    return wrapper  # type: ignore[return-value]


def root() -> Path:
    obj = click.get_current_context().obj
    assert isinstance(obj, Path)
    return obj


def check_id(task_id: str) -> None:
    from corral.supervisor.layout import check_id as check

    check(task_id)


def layout(task_id: str) -> Layout:
    """The layout of an existing task or ensemble under the root."""
    from corral.supervisor.layout import Layout

    check_id(task_id)
    found = Layout(root(), task_id)
    if not found.journal.exists():
        raise UserError(f"{task_id}: no such task under {found.root}")
    return found


def supervisor_alive(layout: Layout) -> bool:
    """A live supervisor holds the lock; ask the kernel (flock), not the pid file."""
    from corral.journal.writer import lock_taken

    journal = os.path.join(os.fspath(layout.root), layout.id, "journal")
    held = lock_taken(journal)
    if held is None:
        # a group-shared task, whose lock only its owner may open: the kernel's list of held
        # flocks still tells (a finished task read by the group is not "supervised")
        from corral.observe.liveness import held_flocks, supervised

        return supervised(journal, held_flocks())
    return held


def tcp_control(layout: Layout) -> str | None:
    """The TCP address a run of this task was given (CORRAL_CONTROL=tcp://...): its
    supervisor may be on another host, where neither its lock nor its socket file is."""
    address = os.environ.get("CORRAL_CONTROL", "")
    if address.startswith("tcp://") and os.environ.get("CORRAL_TASK_ID") == layout.id:
        return address
    return None


ANSWER_WAIT = 120.0  # seconds a live supervisor may take to answer (a loaded host, a compaction)


def answer_wait() -> float:
    """ANSWER_WAIT, or CORRAL_ANSWER_WAIT (seconds > 0) when set."""
    text = os.environ.get("CORRAL_ANSWER_WAIT", "")
    try:
        value = float(text) if text else ANSWER_WAIT
    except ValueError:
        raise UserError(f"CORRAL_ANSWER_WAIT={text!r}: expected seconds, e.g. 120") from None
    if not 0 < value < 1e6:
        raise UserError(f"CORRAL_ANSWER_WAIT={text!r}: expected seconds between 0 and 1e6")
    return value


def ask(layout: Layout, message: dict[str, Any]) -> dict[str, Any] | None:
    """Send a request to the live supervisor; None when there is none.

    A supervisor that holds its task but does not answer within ANSWER_WAIT is an error, not
    "no supervisor": the request may still be acted on, so nothing is done in its place."""
    from corral.supervisor import control

    address = tcp_control(layout)
    if address is None and not supervisor_alive(layout):
        return None
    wait = answer_wait()
    try:
        answer = control.request(address or layout.control, message, timeout=wait)
    except TimeoutError:
        raise UserError(
            f"{layout.id}: its supervisor did not answer within {wait:g} s "
            "(stopped or overloaded?); the request may still take effect: check `corral status`"
        ) from None
    except OSError:
        return None
    if not answer.get("ok"):
        raise UserError(f"{layout.id}: {answer.get('error', 'refused')}")
    return answer


def port(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise UserError(f"-P {name}={value}: a port is a number") from None
    if not 0 < number < 65536:
        raise UserError(f"-P {name}={value}: a port is between 1 and 65535")
    return number


def ensemble_id(ensemble: str | None) -> str:
    if ensemble is not None:
        check_id(ensemble)  # given, even empty: checked like every id
        return ensemble
    value = os.environ.get("CORRAL_TASK_ID")
    if not value:
        raise UserError(
            "name the ensemble with --ensemble ID (or run inside a job, where CORRAL_TASK_ID is set)"
        )
    return value


def finish(engine: Any, quiet: bool, as_json: bool = False, extra: dict[str, Any] | None = None) -> NoReturn:
    """Supervise `engine` to its end with progress on the terminal; exit with its status.

    The last line is `ID: STATE` (stderr, or stdout with -q), or with --json one object on
    stdout: {id, kind, state, exit_status} (+ jobs counts for an ensemble, + `extra`)."""
    from corral.cli import progress
    from corral.supervisor.run import exit_status, supervise

    reporter = progress.Reporter(engine, quiet=quiet)
    state = supervise(engine, reporter)
    reporter.close()
    code = exit_status(state)
    if as_json:
        emit(outcome(engine, state.value, code) | (extra or {}))
    else:
        click.echo(f"{engine.layout.id}: {state.value}", err=quiet is False)
    sys.exit(code)


def outcome(engine: Any, state: str, code: int) -> dict[str, Any]:
    from corral.core.records import JournalKind  # not at the top: `corral status` loads this module

    data: dict[str, Any] = {
        "id": engine.layout.id,
        "kind": (JournalKind.ENSEMBLE if engine.ensemble else JournalKind.TASK).value,
        "state": state,
        "exit_status": code,
    }
    if engine.ensemble:
        from corral.observe.views import job_counts

        data["jobs"] = job_counts(engine.sup)
    return data


def emit(data: dict[str, Any]) -> None:
    """A --json answer: one object on one line of stdout."""
    import json

    click.echo(json.dumps(data, default=str))


def already_ended(task_id: str, state: str, op: str) -> UserError:
    """The one answer of every control command for a task that ended: exit 2, nothing changed."""
    return UserError(f"{task_id}: already {state}; nothing to {op}")


port_option = click.option(
    "-P", "--port", "ports", multiple=True, metavar="NAME=PORT", help="Bind {{ports.NAME}}."
)
set_option = click.option("--set", "sets", multiple=True, metavar="X=V", help="Bind {{params.X}}.")
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object on stdout (shape in the README)."
)
