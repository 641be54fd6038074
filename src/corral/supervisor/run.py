"""Running a task or ensemble from start to end: preparation, supervision, detaching."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from corral import spec as specs  # templating and validation load on first use (lazy)
from corral.core.states import TaskState
from corral.errors import UserError
from corral.spec.model import Ensemble, Task
from corral.supervisor import proc, safefs
from corral.supervisor.backend import BackendKinds
from corral.supervisor.engine import Engine
from corral.supervisor.folding import Jobs
from corral.supervisor.identity import check_users
from corral.supervisor.layout import Layout
from corral.supervisor.session import create

EXIT_STATUS = {TaskState.SUCCESS: 0, TaskState.FAILED: 1, TaskState.KILLED: 3, TaskState.LOST: 3}


class AssignmentError(ValueError):
    pass


def exit_status(state: TaskState) -> int:
    return EXIT_STATUS.get(state, 3)


def parse_assignments(items: Iterable[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UserError(f"{flag} {item}: expected NAME=VALUE")
        try:  # the value is recorded in the journal, whose strings are UTF-8
            item.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(f"{flag} {item!r}: not valid UTF-8 text (the journal records it)") from None
        out.append((name, value))
    return out


def render_for_run(
    subject: Task | Ensemble, layout: Layout, ports: dict[str, int], params: dict[str, Any], file: str | None
) -> Task | Ensemble:
    """Fill templates now, so an unbound name is an error before anything runs."""
    check_users(subject, file)
    if isinstance(subject, Task):
        ctx = specs.TemplateContext(
            task_id=layout.id,
            task_name=subject.name,
            task_dir=str(layout.dir),
            ports=ports,
            params=params,
            job=None,
        )
        return specs.render_task(subject, ctx, file=file)
    specs.validate_ensemble(subject, file=file)
    # render the first job as a probe: unbound names in the template fail here, not at job 1000
    from corral.spec import job_task

    base = str(Path(file).absolute().parent) if file else None
    space = specs.ParamSpace.from_ensemble(subject, base_dir=base, file=file)
    if len(space):
        Jobs(layout, subject, job_task(subject.job, subject.name), space, file=file).task_for(0)
    if subject.params_file and base and not os.path.isabs(subject.params_file):
        import msgspec

        subject = msgspec.structs.replace(subject, params_file=str(Path(base) / subject.params_file))
    return subject


def new_engine(
    layout: Layout,
    prepared: Task | Ensemble,
    context: dict[str, Any],
    file: str | None,
    *,
    group: bool = False,
    backends: BackendKinds | None = None,
) -> Engine:
    return create(layout, prepared, context=context, file=file, group=group, backends=backends)


def supervise(engine: Engine, reporter: Any = None) -> TaskState:
    proc.become_subreaper()
    if reporter is not None:
        engine.on_turn = reporter.turn
        engine.on_record = reporter.record
    try:
        return engine.run()
    finally:
        engine.writer.close()


def detach(layout: Layout, make_engine: Callable[[], Engine], *, close_fds: bool = False) -> int:
    """Start supervising in a daemon process; return its pid once the journal is open.

    Double fork and setsid, so the supervisor survives the shell that started it. Errors that
    happen while opening the journal come back through a pipe and are raised here.
    `close_fds`: the daemon closes every descriptor it inherited (beyond 0-2): forked from a
    long-lived program (an executor's driver), it must not keep that program's sockets,
    pipes and files open for as long as it supervises.
    """
    read_fd, write_fd = os.pipe()
    first = os.fork()
    if first == 0:
        os.close(read_fd)
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        if close_fds:
            # the program's objects that hold those descriptors must never close them now
            # (the numbers get reused by the journal): keep them from the cyclic collector
            gc.freeze()
            os.closerange(3, write_fd)
            os.closerange(write_fd + 1, 1 << 20)
        code = 0
        try:
            engine = make_engine()
            mode = safefs.file_mode(layout.dir)  # the engine made (or checked) the directory
            log = safefs.open_new(layout.supervisor_log, os.O_WRONLY | os.O_APPEND, mode)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.write(write_fd, f"ok {os.getpid()}\n".encode())
            os.close(write_fd)
            os.dup2(log, 1)
            os.dup2(log, 2)
            supervise(engine)
        except BaseException as exc:  # report to the parent, then leave
            with contextlib.suppress(OSError):
                os.write(write_fd, f"error {exc}\n".encode())
            if isinstance(exc, UserError):  # e.g. a journal that stayed unwritable: one line
                with contextlib.suppress(OSError):
                    print(f"corral: {exc}", file=sys.stderr)
            else:
                traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            os._exit(code)
    os.close(write_fd)
    data = b""
    while chunk := os.read(read_fd, 4096):
        data += chunk
    os.close(read_fd)
    os.waitpid(first, 0)
    text = data.decode(errors="replace").strip()
    if text.startswith("ok "):
        return int(text.split()[1])
    raise UserError(text.removeprefix("error ") or "the supervisor did not start")
