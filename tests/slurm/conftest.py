"""Fixtures for tests against a real Slurm cluster.

The cluster is started before pytest by ``scripts/slurm-up.sh`` (CI does it in ``.ci/run``).
Without a usable cluster these tests skip with the reason, unless ``CORRAL_REQUIRE_SLURM=1``,
in which case they fail.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator

import pytest

from corral.backends.slurm_client import SlurmClient
from corral.backends.slurm_states import SlurmJobInfo


def _unavailable(reason: str) -> None:
    if os.environ.get("CORRAL_REQUIRE_SLURM") == "1":
        pytest.fail(f"Slurm required (CORRAL_REQUIRE_SLURM=1) but {reason}", pytrace=False)
    pytest.skip(f"no usable Slurm: {reason} (start one with scripts/slurm-up.sh as root)")


@pytest.fixture(scope="session")
def slurm() -> SlurmClient:
    """A client for the local cluster; skips (or fails) when there is none."""
    client = SlurmClient(timeout=30)
    if not client.available():
        _unavailable("sbatch/squeue are not installed")
    if not client.sinfo_ok():
        _unavailable("sinfo does not answer or no partition is up")
    return client


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


@pytest.fixture
def pilot_ids(slurm: SlurmClient) -> Iterator[list[str]]:
    """Ensemble ids a test runs on pilot workers; their worker jobs (named corral-pilot-ID)
    still in Slurm are cancelled afterwards (only this test's: the Slurm here is shared)."""
    ids: list[str] = []
    yield ids
    for task_id in ids:
        subprocess.run(["scancel", f"--name=corral-pilot-{task_id}"], capture_output=True, check=False)
