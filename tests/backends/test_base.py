"""backends/base.py: every backend (local, slurm-steps, slurm) implements the one interface the
supervisor's loop drives, and the session gives a journal the backend its spec names."""

from __future__ import annotations

import os
import typing
from pathlib import Path

import pytest

from corral.backends.base import Backend
from corral.backends.kinds import KINDS
from corral.backends.slurm import SlurmBackend
from corral.backends.slurm_steps import SlurmStepsBackend
from corral.spec.load import load_spec
from corral.spec.model import Ensemble, Slurm, Task
from corral.supervisor.layout import Layout
from corral.supervisor.local import LocalBackend
from corral.supervisor.session import SessionError, create


def test_the_slurm_backend_is_a_backend(tmp_path: Path) -> None:
    backend: Backend = SlurmBackend(tmp_path, "t", Slurm())  # mypy checks the signatures
    assert isinstance(backend, Backend)  # and the runtime check the methods
    # a batch system starts no run here: the run-level defaults
    assert backend.busy is False
    assert backend.recovered() == (0, 0)


def test_every_backend_a_spec_can_name_has_a_kind() -> None:
    for model in (Task, Ensemble):
        names = set(typing.get_args(typing.get_type_hints(model)["backend"]))
        assert names - {"local"} == set(KINDS)


def _spec(tmp_path: Path, backend: str) -> Path:
    spec = tmp_path / "e.yaml"
    spec.write_text(f"name: e\nbackend: {backend}\njob:\n  cmd: 'true'\nparams:\n  n: [0, 1]\n")
    return spec


def test_a_local_journal_gets_the_local_backend(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "root", "e1")
    engine = create(layout, load_spec(_spec(tmp_path, "local")), context={})
    try:
        assert type(engine.backend) is LocalBackend
        assert isinstance(engine.backend, Backend)
    finally:
        engine.writer.close()


def test_slurm_steps_inside_an_allocation_gets_its_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "1")  # the check reads the environment only
    layout = Layout(tmp_path / "root", "e1")
    engine = create(layout, load_spec(_spec(tmp_path, "slurm-steps")), context={}, backends=KINDS)
    try:
        assert type(engine.backend) is SlurmStepsBackend
        task = engine.sup.task_for(0)
        argv = engine.backend.command(["true"], task, "main")
        assert os.path.basename(argv[0]) == "srun" and argv[-1] == "true", argv
        assert "--job-name=e1.main" in argv, argv
    finally:
        engine.writer.close()


@pytest.mark.parametrize("backend", ["slurm", "slurm-steps"])
def test_a_command_that_gives_no_backends_is_refused_and_leaves_nothing(tmp_path: Path, backend: str) -> None:
    layout = Layout(tmp_path / "root", "e1")
    with pytest.raises(SessionError, match=f"backend {backend} is not available"):
        create(layout, load_spec(_spec(tmp_path, backend)), context={})
    assert not layout.dir.exists()


def test_the_pilot_backend_is_a_backend(tmp_path: Path) -> None:
    from corral.backends.pilot import PilotBackend
    from corral.spec.model import Pilot

    backend: Backend = PilotBackend(tmp_path, "t", Slurm(pilot=Pilot()), Pilot())
    assert isinstance(backend, Backend)
