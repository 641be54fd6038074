"""The batch fold (core/batchfold.py) ends where the plain fold does: random simulated ensemble
journals, folded in random batches, give the same state and the same next decision as
`Supervision.apply` record by record; damaged journals are refused at the same record with
the same error; and a job that starts and ends inside a batch the common way gets no runtime."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sim import Behaviour, Sim
from test_properties import LIMIT, SETTINGS, dump, ensembles

from corral.core.batchfold import FoldFailed, fold_batch
from corral.core.records import Cause, JobsAdded, Record, RunUpdate, Transition
from corral.core.supervision import Policy, Supervision
from corral.core.task import TaskRuntime
from corral.spec.model import Process, Task

TWO = Task("job", (Process("a", cmd="x"), Process("b", cmd="y")))


def _everything(sup: Supervision) -> dict[str, Any]:
    """`dump` and what it leaves out that a fold also writes (decide-time sets, totals)."""
    return {
        **dump(sup),
        "dirty": sorted(sup.dirty),
        "jobs_kept": sorted(sup.jobs),
        "run_totals": list(sup.run_totals),
        "retry_due": dict(sup.retry_due),
        "retry_at": sorted(sup.retry_at),
        "submitted": dict(sup.submitted),
        "abandoned": sorted(sup.abandoned),
        "added": list(sup.added),
        "opened": sup.opened,
        "notes": list(sup.notes),
        "started_at": sup.started_at,
    }


def _reference(fresh: Any, records: list[Record]) -> tuple[Supervision, tuple[int, str] | None]:
    """The plain fold, record by record; the index and text of the first refusal."""
    sup = fresh()
    for index, rec in enumerate(records):
        try:
            sup.apply(rec)
        except Exception as exc:
            return sup, (index, f"{type(exc).__name__}: {exc}")
    return sup, None


def _batched(
    fresh: Any, records: list[Record], cuts: list[int]
) -> tuple[Supervision, tuple[int, str] | None]:
    sup = fresh()
    bounds = sorted({0, len(records), *(min(c, len(records)) for c in cuts)})
    for start, stop in zip(bounds, bounds[1:], strict=False):
        try:
            fold_batch(sup, records[start:stop])
        except FoldFailed as failed:
            cause = failed.__cause__
            return sup, (start + failed.index, f"{type(cause).__name__}: {cause}")
    return sup, None


@st.composite
def journals(draw: st.DrawFn) -> tuple[Any, list[Record]]:
    """A simulated ensemble's journal (one process a job, or two), jobs added on the way."""
    task, total, policy, behaviour, reqs = draw(ensembles())
    if draw(st.booleans()):
        task = TWO
    added = draw(st.lists(st.integers(1, 3), max_size=2))
    extra = [JobsAdded(0, [{}] * n, 2.0 + 3 * i) for i, n in enumerate(added)]
    keep = draw(st.sampled_from([False, False, False, True]))

    def fresh() -> Supervision:
        return Supervision("ensemble", "e", lambda _j: task, total, policy, keep_finished=keep)

    sim = Sim(fresh(), behaviour, requests=[*reqs, *extra], fresh=fresh, limit=LIMIT)
    sim.run()
    return fresh, sim.records


@SETTINGS
@given(journals(), st.lists(st.integers(0, 400), max_size=4))
def test_batches_fold_like_the_plain_fold(journal: Any, cuts: list[int]) -> None:
    fresh, records = journal
    plain, refused = _reference(fresh, records)
    assert refused is None
    batched, failed = _batched(fresh, records, cuts)
    assert failed is None
    assert _everything(batched) == _everything(plain)
    now = records[-1].at
    assert batched.decide(now).records == plain.decide(now).records


def _damage(records: list[Record], data: st.DataObject) -> list[Record]:
    """One record removed, repeated, moved, or changed the way a damaged journal could be."""
    out = list(records)
    at = data.draw(st.integers(0, len(out) - 1))
    how = data.draw(st.sampled_from(["drop", "repeat", "swap", "state", "run", "job", "exit", "attempt"]))
    rec = out[at]
    if how == "drop":
        del out[at]
    elif how == "repeat":
        out.insert(at, rec)
    elif how == "swap":
        out[at - 1], out[at] = out[at], out[at - 1]
    elif isinstance(rec, RunUpdate | Transition):
        if how == "state":
            states = ["ACTIVE", "SUCCESS", "RUNNING", "LAUNCHING", "BOGUS"]
            change: dict[str, Any] = {"state": data.draw(st.sampled_from(states))}
        elif how == "run":
            change = {"run": rec.run + 1} if isinstance(rec, RunUpdate) else {"cause": Cause.HEARTBEAT}
        elif how == "job":
            change = {"job": data.draw(st.sampled_from([rec.job + 1, -2, 10**6]))}
        elif how == "exit":
            change = {"exit_code": data.draw(st.sampled_from([0, 3, 2**40]))}
        else:
            change = {"attempt": 70_000} if isinstance(rec, Transition) else {"process": "other"}
        out[at] = msgspec.structs.replace(rec, **change)
    return out


@SETTINGS
@given(journals(), st.lists(st.integers(0, 400), max_size=3), st.data())
def test_a_damaged_journal_is_refused_at_the_same_record(journal: Any, cuts: list[int], data: Any) -> None:
    fresh, records = journal
    damaged = _damage(records, data)
    plain, refused = _reference(fresh, damaged)
    batched, failed = _batched(fresh, damaged, cuts)
    assert failed == refused
    if refused is None:
        assert _everything(batched) == _everything(plain)


def test_jobs_that_start_and_end_in_the_batch_get_no_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    task = Task("job", (Process("main", cmd="x"),))

    def fresh() -> Supervision:
        return Supervision("ensemble", "e", lambda _j: task, 30, Policy(job_limit=4))

    sim = Sim(fresh(), lambda _j, _p: Behaviour(duration=1.0), fresh=fresh, limit=LIMIT)
    sim.run()
    records = sim.records
    middle = next(i for i, r in enumerate(records) if isinstance(r, Transition) and r.job == 15)
    built: list[int] = []
    runtime = TaskRuntime.__init__

    def counted(rt: TaskRuntime, job: int, spec: Task) -> None:
        built.append(job)
        runtime(rt, job, spec)

    monkeypatch.setattr(TaskRuntime, "__init__", counted)
    whole = fresh()
    fold_batch(whole, records)
    assert built == []  # 30 jobs went ACTIVE, LAUNCHING, RUNNING, SUCCESS, SUCCESS
    assert whole.counts[whole.job_state(0)] == 30 and not whole.jobs

    cut = fresh()
    fold_batch(cut, records[:middle])
    assert sorted(built) == sorted(cut.jobs) and cut.jobs  # only the jobs still going at the cut
    plain, _ = _reference(fresh, records[:middle])
    assert _everything(cut) == _everything(plain)
