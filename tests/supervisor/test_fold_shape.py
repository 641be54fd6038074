"""An ensemble's fold keeps each job's task unrendered (Supervision.fold_task): rendering may
change only text (cmd, argv, env values, sandbox), which only starting a run reads, and a
replay renders nothing."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral import spec as specs
from corral.core.records import Opened, RunUpdate, Transition
from corral.spec.model import Ensemble, JobTemplate, Process, Task
from corral.supervisor.folding import supervision_for
from corral.supervisor.layout import Layout

TEMPLATES = [
    JobTemplate(cmd="echo {{params.n}} > {{job.dir}}/out"),
    JobTemplate(argv=("printf", "%s", "{{params.n}}-{{job.index}}"), env={"N": "{{params.n}}"}, timeout=3.0),
    JobTemplate(
        processes=(
            Process(name="a", cmd="echo {{params.n}}", env={"X": "{{task.id}}", "Y": "plain"}),
            Process(name="b", argv=("true",), final=True, max_failures=2, daemon=False),
        ),
        env={"N": "{{params.n}}", "K": "k"},
        max_failures=2,
    ),
]


def _text_of(rendered: Task, template: Task) -> Task:
    """`rendered` with the template's text put back where rendering may write."""
    processes = tuple(
        msgspec.structs.replace(p, cmd=t.cmd, argv=t.argv, env=t.env)
        for p, t in zip(rendered.processes, template.processes, strict=True)
    )
    return msgspec.structs.replace(rendered, processes=processes, env=template.env, sandbox=template.sandbox)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(TEMPLATES), st.lists(st.text(max_size=5) | st.integers(), min_size=1, max_size=5))
def test_rendering_changes_only_text(template: JobTemplate, values: list[object]) -> None:
    ens = Ensemble(name="e", job=template, params={"n": values})
    opened = Opened("ensemble", "e", msgspec.to_builtins(ens), 1.0, "h", "b")
    sup, _jobs = supervision_for(opened, Layout(Path("/nonexistent-root"), "e"), keep_finished=False)
    for job in range(sup.total):
        shape, rendered = sup.task_shape(job), sup.task_for(job)
        assert _text_of(rendered, shape) == shape  # the fold decides on the same task
        if isinstance(values[job], int) or values[job]:
            assert rendered != shape  # and the text is rendered for a launch


def test_a_fold_renders_no_job(monkeypatch: pytest.MonkeyPatch) -> None:
    ens = Ensemble(name="e", job=TEMPLATES[0], params={"n": list(range(50))})
    opened = Opened("ensemble", "e", msgspec.to_builtins(ens), 1.0, "h", "b")
    sup, _jobs = supervision_for(opened, Layout(Path("/nonexistent-root"), "e"), keep_finished=True)

    def refuse(*_args: object, **_kwargs: object) -> Task:
        raise AssertionError("rendered during a fold")

    monkeypatch.setattr(specs, "render_task", refuse)
    for job in range(50):
        sup.apply(Transition(job, "ACTIVE", 1.0))
        sup.apply(RunUpdate(job, "main", 0, "LAUNCHING", 1.0))
        sup.apply(RunUpdate(job, "main", 0, "SUCCESS", 2.0, exit_code=0))
        sup.apply(Transition(job, "SUCCESS", 2.0))
    assert sup.counts[sup.job_state(0)] == 50
    rt = sup.job(7)
    assert rt is not None and rt.spec.processes[0].cmd == TEMPLATES[0].cmd  # unrendered
