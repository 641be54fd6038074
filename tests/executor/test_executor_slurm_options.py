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


def test_an_executor_on_slurm_runs_on_pilot_workers_by_default() -> None:
    pilot = ensemble_for(None, "slurm", None).slurm.pilot
    assert pilot is not None
    assert (pilot.workers, pilot.cpus, pilot.time, pilot.idle_timeout) == (1, 4, 3600, 60)
    wide = ensemble_for(20, "slurm", {"poll_interval": 0.5}).slurm
    assert wide.poll_interval == 0.5 and wide.pilot is not None
    assert (wide.pilot.cpus, wide.pilot.workers, wide.pilot.max_workers) == (8, 3, 3)  # 24 slots >= 20
    own = ensemble_for(20, "slurm", {"pilot": {"cpus": 2, "time": "10:00"}}).slurm.pilot
    assert own is not None and (own.cpus, own.time, own.workers) == (2, 600, 1)  # the block as given
    assert ensemble_for(4, "local", None).slurm.pilot is None


@pytest.mark.parametrize("off", [None, False])
def test_pilot_none_or_false_opts_out_to_arrays(off: object) -> None:
    slurm = ensemble_for(4, "slurm", {"pilot": off, "time": 60}).slurm
    assert slurm.pilot is None and slurm.time == 60
    assert ensemble_for(4, "slurm", {"pilot": off}).slurm == ensemble_for(4, "local", None).slurm


def test_a_bad_pilot_block_fails_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        corral.Executor(id="ex", root=tmp_path, backend="slurm", slurm={"pilot": {"cpu": 2}})
    assert "slurm.pilot: unknown field 'cpu'" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(SpecError):
        corral.Executor(id="ex", root=tmp_path, backend="slurm", slurm={"pilot": "yes"})
    assert list(tmp_path.iterdir()) == []
