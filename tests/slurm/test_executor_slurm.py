"""corral.Executor with backend="slurm" on the real local cluster: calls on pilot workers by
default (issue 14), as job arrays with slurm={"pilot": None}."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cloudpickle
import executor_calls as calls  # tests/executor's, on sys.path through conftest

import corral
from corral.core.records import Submitted, decode
from corral.journal import read_journal

cloudpickle.register_pickle_by_value(calls)


def test_fifty_calls_with_one_retry_on_slurm(executor_root: Path, executor_id, tmp_path: Path) -> None:
    """The default: calls handed to pilot workers (no `pilot` key in slurm={...})."""
    ident = executor_id("exs")
    with corral.Executor(
        id=ident, root=executor_root, max_workers=16, backend="slurm", slurm={"poll_interval": 0.5}
    ) as ex:
        futs = [ex.with_options(retries=1).submit(calls.flaky, str(tmp_path), i) for i in range(50)]
        assert [f.result(timeout=600) for f in futs] == list(range(50))
        square = ex.submit(calls.square, futs[7])  # a dependency, on Slurm too
        assert square.result(timeout=300) == 49
    starts = Counter((tmp_path / "starts").read_text().split())
    assert starts == {str(i): 2 for i in range(50)}  # each failed once, then succeeded once
    recs = [decode(p) for p in read_journal(executor_root / ident / "journal").payloads]
    handed = [r for r in recs if isinstance(r, Submitted)]
    # 50 calls, 50 retries and the square: 101 hand-overs, or more when a job prefetched on a
    # busy worker was moved to an idle one (handed over again, a new Submitted; never run
    # twice: the starts above)
    assert handed and sum(len(r.jobs) for r in handed) >= 101
    assert all(i.startswith("pilot:") for r in handed for i in r.ids)  # no batch job per call


def test_pilot_none_sends_calls_as_job_arrays(executor_root: Path, executor_id, tmp_path: Path) -> None:
    ident = executor_id("exa")
    with corral.Executor(
        id=ident, root=executor_root, max_workers=20, backend="slurm",
        slurm={"poll_interval": 0.5, "time": 120, "pilot": None},
    ) as ex:  # fmt: skip
        futs = [ex.with_options(retries=1).submit(calls.flaky, str(tmp_path), i) for i in range(20)]
        assert [f.result(timeout=600) for f in futs] == list(range(20))
    starts = Counter((tmp_path / "starts").read_text().split())
    assert starts == {str(i): 2 for i in range(20)}
    recs = [decode(p) for p in read_journal(executor_root / ident / "journal").payloads]
    arrays = [r for r in recs if isinstance(r, Submitted)]
    assert arrays and sum(len(r.jobs) for r in arrays) == 40
    assert not any(i.startswith("pilot:") for r in arrays for i in r.ids)
    assert len(arrays) < 40  # batched into arrays, not one sbatch per call


def test_nested_calls_on_a_slurm_node_reach_the_supervisor_over_tcp(executor_root: Path, executor_id) -> None:
    """A call on a Slurm node submits and waits for a nested call through the TCP control
    address its run was given (the unix socket exists only on the launcher's host; this
    cluster is one node, so the address the call used is what shows the TCP path)."""
    ident = executor_id("exn")
    with corral.Executor(
        id=ident,
        root=executor_root,
        max_workers=4,
        backend="slurm",
        slurm={"poll_interval": 0.5, "time": 120},
    ) as ex:
        used, given, value = ex.submit(calls.nested_where, 6).result(timeout=600)
        assert not ex.address.startswith("tcp://")  # the driver, on this host: the unix socket
    assert value == 36
    assert used.startswith("tcp://") and used == given
    published = (executor_root / ident / "control.tcp").read_text().strip()
    assert used == published
    recs = [decode(p) for p in read_journal(executor_root / ident / "journal").payloads]
    assert sum(len(r.jobs) for r in recs if isinstance(r, Submitted)) == 2  # both went to Slurm
