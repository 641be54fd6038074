"""backends/base.py: every batch-system backend implements the one interface the loop drives."""

from __future__ import annotations

from pathlib import Path

from corral.backends.base import Backend
from corral.backends.slurm import SlurmBackend
from corral.spec.model import Slurm


def test_the_slurm_backend_is_a_backend(tmp_path: Path) -> None:
    backend: Backend = SlurmBackend(tmp_path, "t", Slurm())  # mypy checks the signatures
    assert isinstance(backend, Backend)  # and the runtime check the methods


def test_the_pilot_backend_is_a_backend(tmp_path: Path) -> None:
    from corral.backends.pilot import PilotBackend
    from corral.spec.model import Pilot

    backend: Backend = PilotBackend(tmp_path, "t", Slurm(pilot=Pilot()), Pilot())
    assert isinstance(backend, Backend)
