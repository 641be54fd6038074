"""corral.Executor(backend="slurm", slurm={"pilot": {...}}): calls handed to pilot workers on
the real local cluster (issue 14), not a batch job each."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cloudpickle
import executor_calls as calls  # tests/executor's, on sys.path through conftest

import corral
from corral.core.records import Submitted, decode
from corral.journal import read_journal

cloudpickle.register_pickle_by_value(calls)

PILOT = {"workers": 1, "max_workers": 1, "cpus": 4, "time": 600, "idle_timeout": 60}


def test_fifty_calls_with_one_retry_on_pilot_workers(
    executor_root: Path, executor_id, tmp_path: Path
) -> None:
    ident = executor_id("exp")
    with corral.Executor(
        id=ident, root=executor_root, max_workers=8, backend="slurm",
        slurm={"poll_interval": 0.5, "time": 600, "pilot": PILOT},
    ) as ex:  # fmt: skip
        futs = [ex.with_options(retries=1).submit(calls.flaky, str(tmp_path), i) for i in range(50)]
        assert [f.result(timeout=600) for f in futs] == list(range(50))
        assert ex.submit(calls.square, futs[7]).result(timeout=300) == 49  # a dependency
        used, given, value = ex.submit(calls.nested_where, 6).result(timeout=300)  # a nested call
    assert value == 36 and used.startswith("tcp://") and used == given
    starts = Counter((tmp_path / "starts").read_text().split())
    assert starts == {str(i): 2 for i in range(50)}  # each failed once, then succeeded once
    recs = [decode(p) for p in read_journal(executor_root / ident / "journal").payloads]
    handed = [r for r in recs if isinstance(r, Submitted)]
    assert handed and all(i.startswith("pilot:") for r in handed for i in r.ids)
    assert sum(len(r.jobs) for r in handed) == 103  # 100 attempts, the dependent, the nested pair
