"""corral: run tasks and ensembles of OS processes, and never lose track of them.

The public surface is small on purpose:

    import corral
    task = corral.Task(name="hello", processes=[corral.Process(name="say", cmd="echo hi")])
    state = corral.run(task, root="/tmp/corral")   # -> corral.TaskState.SUCCESS
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.core.states import RunState, TaskState
    from corral.executor import CallError, CallFailed, DependencyFailed, Executor
    from corral.spec.errors import SpecError
    from corral.spec.model import Ensemble, Halt, JobTemplate, Logger, Process, Resources, Rotate, Slurm, Task

# The names above load on first use (PEP 562): `corral --help` and `corral status` import this
# package too, and msgspec structs would cost them ~20 ms they never use.
_LAZY = {
    "RunState": "corral.core.states",
    "TaskState": "corral.core.states",
    "SpecError": "corral.spec.errors",
    **dict.fromkeys(
        ("Ensemble", "Halt", "JobTemplate", "Logger", "Process", "Resources", "Rotate", "Slurm", "Task"),
        "corral.spec.model",
    ),
    # the executor (and cloudpickle) too
    **dict.fromkeys(("Executor", "CallError", "CallFailed", "DependencyFailed"), "corral.executor"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'corral' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CallError",
    "CallFailed",
    "DependencyFailed",
    "Ensemble",
    "Executor",
    "Halt",
    "JobTemplate",
    "Logger",
    "Process",
    "Resources",
    "Rotate",
    "RunState",
    "Slurm",
    "SpecError",
    "Task",
    "TaskState",
    "run",
]


def run(
    spec: Task | Ensemble | dict[str, Any],
    *,
    root: str | os.PathLike[str] | None = None,
    id: str | None = None,
    ports: dict[str, int] | None = None,
    params: dict[str, Any] | None = None,
    group_readable: bool = False,
) -> TaskState:
    """Run a task or an ensemble to its end under `root` and return its final state.

    The same journal, logs and guarantees as `corral run`: `corral status/read/tail` see it.
    Bad specs raise SpecError (one line, naming the field). The task's directory is private
    (0700, files 0600) unless `group_readable` (0750/0640).
    """
    from corral.backends.kinds import KINDS
    from corral.spec import spec_from_python
    from corral.supervisor.layout import Layout, default_root, new_id
    from corral.supervisor.run import new_engine, render_for_run, supervise

    subject = spec_from_python(spec)
    base = Path(root) if root is not None else default_root()
    task_id = new_id(subject.name, id)
    layout = Layout(base.absolute(), task_id)
    prepared = render_for_run(subject, layout, dict(ports or {}), dict(params or {}), file=None)
    context = {"ports": dict(ports or {}), "params": dict(params or {})}
    engine = new_engine(layout, prepared, context, None, group=group_readable, backends=KINDS)
    return supervise(engine)
