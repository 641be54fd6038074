"""The Slurm options a journal recorded are read back, also from journals written before
`slurm.array` (an option nothing read) was removed."""

from __future__ import annotations

from corral.backends.slurm_layout import slurm_options
from corral.core.records import Opened
from corral.spec.model import Slurm


def test_an_old_journal_with_slurm_array_still_opens() -> None:
    spec = {"slurm": {"partition": "debug", "requeue": True, "array": True, "poll_interval": 1.0}}
    opened = Opened("ensemble", "e", spec, 0.0, "host", "boot")
    assert slurm_options(opened) == Slurm(partition="debug", requeue=True, poll_interval=1.0)
