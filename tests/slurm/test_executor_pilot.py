"""corral.Executor(backend="slurm", slurm={"pilot": {...}}): calls handed to pilot workers on
the real local cluster (issue 14), not a batch job each."""

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

PILOT = {"workers": 1, "max_workers": 1, "cpus": 4, "time": 600, "idle_timeout": 60}


@pytest.fixture
def root(tmp_path: Path, slurm):  # type: ignore[no-untyped-def]
    path = tmp_path / "root"
    path.mkdir()
    yield path
    kill_leftovers(path)


def test_fifty_calls_with_one_retry_on_pilot_workers(root: Path, tmp_path: Path) -> None:
    ident = f"exp-{int(time.time() * 1000) % 10**9}"
    try:
        with corral.Executor(
            id=ident, root=root, max_workers=8, backend="slurm",
            slurm={"poll_interval": 0.5, "time": 600, "pilot": PILOT},
        ) as ex:  # fmt: skip
            futs = [ex.with_options(retries=1).submit(calls.flaky, str(tmp_path), i) for i in range(50)]
            assert [f.result(timeout=600) for f in futs] == list(range(50))
            assert ex.submit(calls.square, futs[7]).result(timeout=300) == 49  # a dependency
            used, given, value = ex.submit(calls.nested_where, 6).result(timeout=300)  # a nested call
    finally:
        subprocess.run(["scancel", f"--name=corral-pilot-{ident}"], capture_output=True, check=False)
    assert value == 36 and used.startswith("tcp://") and used == given
    starts = Counter((tmp_path / "starts").read_text().split())
    assert starts == {str(i): 2 for i in range(50)}  # each failed once, then succeeded once
    recs = [decode(p) for p in read_journal(root / ident / "journal").payloads]
    handed = [r for r in recs if isinstance(r, Submitted)]
    assert handed and all(i.startswith("pilot:") for r in handed for i in r.ids)
    assert sum(len(r.jobs) for r in handed) == 103  # 100 attempts, the dependent, the nested pair
