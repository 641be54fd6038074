"""Fixtures for tests against a real Slurm cluster (the `slurm` client itself, which skips
or fails without a usable cluster, is tests/conftest.py's: tests/observe use it too)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "executor"))  # executor_calls, leftovers
from leftovers import kill_leftovers

from corral.backends.slurm_client import SlurmClient
from corral.backends.slurm_states import SlurmJobInfo

WaitFn = Callable[..., dict[str, SlurmJobInfo]]


@pytest.fixture
def wait_terminal(slurm: SlurmClient) -> WaitFn:
    """``wait_terminal(ids, expect=N, timeout=60)``: poll with one squeue per round until
    ``expect`` entries (default: one per id) are all terminal; returns the last answer."""

    def wait(
        job_ids: Iterable[str], expect: int | None = None, timeout: float = 60.0
    ) -> dict[str, SlurmJobInfo]:
        ids = list(job_ids)
        want = len(ids) if expect is None else expect
        deadline = time.monotonic() + timeout
        last: dict[str, SlurmJobInfo] = {}
        while time.monotonic() < deadline:
            last = slurm.squeue(ids)
            if len(last) >= want and all(i.terminal for i in last.values()):
                return last
            time.sleep(0.25)
        states = {k: v.raw_state for k, v in sorted(last.items())}
        raise AssertionError(f"jobs {ids} not all ended after {timeout}s: {states}")

    return wait


def _new_ids(*names: str) -> Iterator[Callable[[str], str]]:
    """Yields ``new(base)``, a new id (BASE-random) a call; afterwards cancels the Slurm jobs
    named by NAMES (``{}`` standing for each id), only those: the Slurm here is shared."""
    ids: list[str] = []

    def new(base: str) -> str:
        ids.append(f"{base}-{uuid.uuid4().hex[:6]}")
        return ids[-1]

    yield new
    for ident in ids:
        for name in names:
            subprocess.run(["scancel", f"--name={name.format(ident)}"], capture_output=True, check=False)


@pytest.fixture
def pilot_id(slurm: SlurmClient) -> Iterator[Callable[[str], str]]:
    """``pilot_id("pe")``: an id for an ensemble a test runs on pilot workers; its worker jobs
    (named corral-pilot-ID) still in Slurm are cancelled afterwards."""
    yield from _new_ids("corral-pilot-{}")


@pytest.fixture
def executor_id(slurm: SlurmClient) -> Iterator[Callable[[str], str]]:
    """``executor_id("exs")``: an id for a `corral.Executor` on Slurm; its array tasks (named
    corral-ID) and pilot workers (corral-pilot-ID) still in Slurm are cancelled afterwards."""
    yield from _new_ids("corral-{}", "corral-pilot-{}")


@pytest.fixture
def executor_root(tmp_path: Path, slurm: SlurmClient) -> Iterator[Path]:
    """The root of a test's `corral.Executor`s; what they leave running is killed afterwards."""
    path = tmp_path / "root"
    path.mkdir()
    yield path
    kill_leftovers(path)
