"""Executor(slurm={...}) is read as a spec's `slurm:` block: units, nested blocks, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

import corral
from corral.executor.daemon import ensemble_for
from corral.spec.errors import SpecError


def test_slurm_options_take_the_spec_units() -> None:
    spec = ensemble_for(4, "slurm", {"time": "0:02:00", "memory": "1GB", "poll_interval": 0.5})
    assert spec.slurm.time == 120.0
    assert spec.slurm.memory == 1 << 30
    assert spec.slurm.poll_interval == 0.5
    assert spec.job_limit == 4
    assert ensemble_for(None, "local", None).slurm == ensemble_for(None, "local", {}).slurm


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"tme": 120}, "slurm: unknown field 'tme' (did you mean 'time'?)"),
        ({"time": "soon"}, "slurm.time: not a duration"),
        ({"memory": [1]}, "slurm.memory"),
        ({"poll_interval": "x"}, "slurm.poll_interval"),
    ],
)
def test_bad_slurm_options_fail_in_one_line_before_anything_is_written(
    tmp_path: Path, options: dict[str, object], says: str
) -> None:
    with pytest.raises(SpecError) as caught:
        corral.Executor(id="ex", root=tmp_path, backend="slurm", slurm=options)
    message = str(caught.value)
    assert message.startswith("Executor(slurm=...): ") and says in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []  # no executor created, no supervisor started
