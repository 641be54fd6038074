"""The Python API: corral.Task / corral.Process / corral.Ensemble and corral.run()."""

from __future__ import annotations

import pytest

import corral
from corral.supervisor.layout import Layout
from corral.supervisor.session import replay


def test_run_a_task_from_python(tmp_path):
    out = tmp_path / "out"
    task = corral.Task(
        name="hello",
        processes=[
            corral.Process(name="first", cmd=f"echo {{{{params.word}}}} > {out}"),
            corral.Process(name="second", argv=["sh", "-c", f"cat {out}"], after=["first"]),
        ],
    )
    state = corral.run(task, root=tmp_path / "root", id="py1", params={"word": "hi there"})
    assert state is corral.TaskState.SUCCESS
    assert out.read_text() == "hi there\n"
    sup, _ = replay(Layout(tmp_path / "root", "py1"))
    assert sup.jobs[0].processes["second"].runs[0].exit_code == 0


def test_run_an_ensemble_from_python(tmp_path):
    ens = corral.Ensemble(
        name="sq",
        job=corral.JobTemplate(cmd="test {{params.n}} -lt 3"),
        params={"n": (1, 2, 3, 4)},
        job_limit=2,
    )
    state = corral.run(ens, root=tmp_path, id="ens1")
    assert state is corral.TaskState.FAILED
    sup, _ = replay(Layout(tmp_path, "ens1"))
    assert [sup.job_state(j).value for j in range(4)] == ["SUCCESS", "SUCCESS", "FAILED", "FAILED"]


def test_bad_task_from_python_raises_spec_error(tmp_path):
    task = corral.Task(name="bad", processes=[corral.Process(name="a", cmd="true", after=["nope"])])
    with pytest.raises(corral.SpecError, match="processes\\[0\\].after"):
        corral.run(task, root=tmp_path)
    assert list(tmp_path.iterdir()) == []
