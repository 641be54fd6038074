"""Specs: the task and ensemble model, loading (YAML/JSON/TOML/Python), validation, templates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from corral.spec.errors import SpecError
from corral.spec.model import (
    Ensemble,
    Halt,
    JobTemplate,
    Logger,
    Process,
    Range,
    Resources,
    Rotate,
    Slurm,
    Task,
)

if TYPE_CHECKING:
    from corral.spec.jobtask import job_task
    from corral.spec.load import (
        ensemble_from_python,
        load_spec,
        loads_spec,
        spec_from_builtins,
        spec_from_python,
        task_from_python,
    )
    from corral.spec.params import ParamSpace, ParamTable
    from corral.spec.template import JobContext, TemplateContext, render_task
    from corral.spec.validate import validate_ensemble, validate_task

# Loading (PyYAML), templating (Jinja2) and validation are imported on first use: a process
# that only supervises (a Slurm node, `corral status`) starts without them.
_LAZY = {
    "ensemble_from_python": "load",
    "load_spec": "load",
    "loads_spec": "load",
    "spec_from_builtins": "load",
    "spec_from_python": "load",
    "task_from_python": "load",
    "ParamSpace": "params",
    "ParamTable": "params",
    "JobContext": "template",
    "TemplateContext": "template",
    "job_task": "jobtask",
    "render_task": "template",
    "validate_ensemble": "validate",
    "validate_task": "validate",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'corral.spec' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"corral.spec.{module}"), name)
    globals()[name] = value
    return value


def spec_to_builtins(obj: Task | Ensemble) -> Any:
    """Plain dicts/lists for journaling a spec; read back with task/ensemble_from_builtins."""
    return msgspec.to_builtins(obj, str_keys=True)


def task_from_builtins(data: Any) -> Task:
    """The Task journaled by spec_to_builtins (trusted: types checked, graph not revalidated)."""
    return msgspec.convert(data, Task, str_keys=True)


def ensemble_from_builtins(data: Any) -> Ensemble:
    """The Ensemble journaled by spec_to_builtins."""
    return msgspec.convert(data, Ensemble, str_keys=True)


__all__ = [
    "Ensemble",
    "Halt",
    "JobContext",
    "JobTemplate",
    "Logger",
    "ParamSpace",
    "ParamTable",
    "Process",
    "Range",
    "Resources",
    "Rotate",
    "Slurm",
    "SpecError",
    "Task",
    "TemplateContext",
    "ensemble_from_builtins",
    "ensemble_from_python",
    "job_task",
    "load_spec",
    "loads_spec",
    "render_task",
    "spec_from_builtins",
    "spec_from_python",
    "spec_to_builtins",
    "task_from_builtins",
    "task_from_python",
    "validate_ensemble",
    "validate_task",
]
