"""corral.Executor with backend="slurm": calls as job arrays on the real local cluster."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import cloudpickle
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "executor"))
import executor_calls as calls
from leftovers import kill_leftovers

import corral
from corral.core.records import Submitted, decode
from corral.journal import read_journal

cloudpickle.register_pickle_by_value(calls)


@pytest.fixture
def root(tmp_path: Path, slurm):  # type: ignore[no-untyped-def]
    path = tmp_path / "root"
    path.mkdir()
    yield path
    kill_leftovers(path)


def test_fifty_calls_with_one_retry_on_slurm(root: Path, tmp_path: Path) -> None:
    ident = f"exs-{int(time.time() * 1000) % 10**9}"
    try:
        with corral.Executor(
            id=ident, root=root, max_workers=50, backend="slurm", slurm={"poll_interval": 0.5, "time": 120}
        ) as ex:
            futs = [ex.with_options(retries=1).submit(calls.flaky, str(tmp_path), i) for i in range(50)]
            assert [f.result(timeout=600) for f in futs] == list(range(50))
            square = ex.submit(calls.square, futs[7])  # a dependency, on Slurm too
            assert square.result(timeout=300) == 49
    finally:
        subprocess.run(["scancel", f"--name=corral-{ident}"], capture_output=True, check=False)
    starts = Counter((tmp_path / "starts").read_text().split())
    assert starts == {str(i): 2 for i in range(50)}  # each failed once, then succeeded once
    recs = [decode(p) for p in read_journal(root / ident / "journal").payloads]
    arrays = [r for r in recs if isinstance(r, Submitted)]
    assert arrays and sum(len(r.jobs) for r in arrays) == 101
    assert len(arrays) < 101  # batched into arrays, not one sbatch per call


def test_nested_calls_on_a_slurm_node_reach_the_supervisor_over_tcp(root: Path) -> None:
    """A call on a Slurm node submits and waits for a nested call through the TCP control
    address its run was given (the unix socket exists only on the launcher's host; this
    cluster is one node, so the address the call used is what shows the TCP path)."""
    ident = f"exn-{int(time.time() * 1000) % 10**9}"
    try:
        with corral.Executor(
            id=ident, root=root, max_workers=4, backend="slurm", slurm={"poll_interval": 0.5, "time": 120}
        ) as ex:
            used, given, value = ex.submit(calls.nested_where, 6).result(timeout=600)
            assert not ex.address.startswith("tcp://")  # the driver, on this host: the unix socket
    finally:
        subprocess.run(["scancel", f"--name=corral-{ident}"], capture_output=True, check=False)
    assert value == 36
    assert used.startswith("tcp://") and used == given
    published = (root / ident / "control.tcp").read_text().strip()
    assert used == published
    recs = [decode(p) for p in read_journal(root / ident / "journal").payloads]
    assert sum(len(r.jobs) for r in recs if isinstance(r, Submitted)) == 2  # both went to Slurm
