"""A checkpoint restores exactly the fold it captured: restoring the checkpoint of the first k
records and folding the rest equals folding everything, at every k, for random simulated tasks
and ensembles; and the next decision taken from a restored checkpoint is the replay's."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sim import Sim
from test_properties import LIMIT, SETTINGS, dump, ensembles, requests, task_sim, tasks

from corral.core.checkpoint import capture, decode_checkpoint, encode_checkpoint, restore
from corral.core.records import Opened, Record
from corral.core.supervision import Supervision
from corral.core.task import Run, TaskRuntime


def _restored(fresh: Any, prefix: list[Record]) -> Supervision:
    folded = fresh()
    for rec in prefix:
        folded.apply(rec)
    at = prefix[-1].at if prefix else 0.0
    data = encode_checkpoint(capture(folded, len(prefix), at))
    sup = fresh()
    restore(sup, decode_checkpoint(data))
    return sup


def _check_every_cut(fresh: Any, records: list[Record], cuts: list[int]) -> None:
    whole = fresh()
    for rec in records:
        whole.apply(rec)
    for k in sorted({min(c, len(records)) for c in cuts} | {0, len(records)}):
        sup = _restored(fresh, records[:k])
        for rec in records[k:]:
            sup.apply(rec)
        assert dump(sup) == dump(whole), f"cut at record {k}"
        # the next decision from the checkpoint of the prefix is the replay's
        replayed = fresh()
        for rec in records[:k]:
            replayed.apply(rec)
        restored = _restored(fresh, records[:k])
        now = records[k - 1].at if k else 0.0
        assert restored.decide(now).records == replayed.decide(now).records, f"decision at {k}"


@SETTINGS
@given(tasks(), requests(), st.lists(st.integers(0, 400), max_size=4))
def test_task_checkpoint_then_the_rest_folds_like_the_whole(spec: Any, reqs: Any, cuts: list[int]) -> None:
    task, behaviours = spec
    sim = task_sim(task, behaviours, reqs)
    sim.run()
    _check_every_cut(sim.fresh, sim.records, cuts)  # type: ignore[attr-defined]


@SETTINGS
@given(ensembles(), st.lists(st.integers(0, 400), max_size=4))
def test_ensemble_checkpoint_then_the_rest_folds_like_the_whole(scenario: Any, cuts: list[int]) -> None:
    task, total, policy, behaviour, reqs = scenario

    def fresh() -> Supervision:
        return Supervision("ensemble", "e", lambda _j: task, total, policy)

    sim = Sim(fresh(), behaviour, requests=list(reqs), fresh=fresh, limit=LIMIT)
    sim.run()
    _check_every_cut(fresh, sim.records, cuts)


def test_a_checkpoint_of_another_journal_is_refused() -> None:
    from corral.spec.model import Process, Task

    task = Task("t", (Process("p", cmd="x"),))
    sup = Supervision("task", "t", lambda _j: task, 1, keep_finished=True)
    sup.apply(Opened("task", "t", {}, 1.0, "h", "b"))
    ckpt = capture(sup, 1, 1.0)
    other = Supervision("task", "u", lambda _j: task, 1, keep_finished=True)
    with pytest.raises(ValueError):
        restore(other, ckpt)
    bigger = Supervision("ensemble", "t", lambda _j: task, 3)
    with pytest.raises(ValueError):
        restore(bigger, ckpt)


def test_runtime_fields_are_all_captured() -> None:
    # a field added to Run or TaskRuntime must reach the checkpoint (or be listed as not folded)
    from corral.core import checkpoint

    assert set(checkpoint._RUN_FIELDS) == {f for f in Run.__dataclass_fields__}
    assert set(checkpoint._TASK_SCALARS) | {"job", "spec", "processes", "paused_processes"} == set(
        TaskRuntime.__dataclass_fields__
    )


def test_supervision_fields_are_all_captured() -> None:
    # a field added to Supervision must reach the checkpoint (or be listed as not captured)
    from corral.core import checkpoint

    captured = set(checkpoint.Checkpoint.__struct_fields__) - {"version", "records", "at"}
    captured |= {"kind", "id", "keep_finished", "opened", "total", "next_new", "state", "reason"}
    fields = set(Supervision.__dataclass_fields__)
    assert fields - checkpoint.NOT_CAPTURED <= captured, fields - checkpoint.NOT_CAPTURED - captured


def test_run_numbers_of_forgotten_failed_jobs_survive_a_checkpoint() -> None:
    from corral.spec.model import Process, Task

    task = Task("t", (Process("p", cmd="x"),))
    sup = Supervision("ensemble", "e", lambda _j: task, 3)
    sup.run_numbers = {1: {"p": 2}}
    restored = Supervision("ensemble", "e", lambda _j: task, 3)
    restore(restored, decode_checkpoint(encode_checkpoint(capture(sup, 0, 0.0))))
    assert restored.run_numbers == {1: {"p": 2}}


def _ensemble_with_history(jobs: int) -> Any:
    """A Supervision of `jobs` jobs, each launched and succeeded, one failed and relaunched."""
    from corral.core.records import RunUpdate, Transition
    from corral.spec.model import Process, Task

    task = Task("t", (Process("p", cmd="x"),))
    sup = Supervision("ensemble", "e", lambda _j: task, jobs)
    for job in range(jobs):
        sup.apply(Transition(job, "ACTIVE", 1.0))
        sup.apply(RunUpdate(job, "p", 0, "LAUNCHING", 1.0))
        sup.apply(RunUpdate(job, "p", 0, "RUNNING", 1.0, pid=10 + job, start_ticks=1))
        sup.apply(RunUpdate(job, "p", 0, "FAILED" if job == 0 else "SUCCESS", 2.0, exit_code=job % 2))
        sup.apply(Transition(job, "FAILED" if job == 0 else "SUCCESS", 2.0))
    return sup, task


def test_run_totals_and_the_job_table_survive_a_checkpoint_compressed() -> None:
    sup, task = _ensemble_with_history(2000)
    assert sup.run_totals == [2000, 1, 0]
    data = encode_checkpoint(capture(sup, 10_000, 2.0))
    assert len(data) < 2000  # 14 KB of table raw: mostly the same values, compressed
    restored = Supervision("ensemble", "e", lambda _j: task, 2000)
    restore(restored, decode_checkpoint(data))
    assert restored.run_totals == [2000, 1, 0]
    assert list(restored.exit_codes) == list(sup.exit_codes) and restored.states == sup.states


def test_a_version_1_checkpoint_still_restores_and_a_damaged_table_is_refused() -> None:
    import msgspec

    sup, task = _ensemble_with_history(50)
    current = capture(sup, 250, 2.0)
    # as version 1 wrote it: the arrays' bytes as they are, no run totals
    old = msgspec.structs.replace(
        current,
        version=1,
        states=sup.states.tobytes(),
        attempts=sup.attempts.tobytes(),
        exit_codes=sup.exit_codes.tobytes(),
        run_totals=[],
    )
    restored = Supervision("ensemble", "e", lambda _j: task, 50)
    restore(restored, decode_checkpoint(encode_checkpoint(old)))
    assert list(restored.exit_codes) == list(sup.exit_codes) and restored.states == sup.states
    assert restored.run_totals == [0, 0, 0]  # unknown before version 2: counted from here
    damaged = msgspec.structs.replace(current, exit_codes=b"not zlib")
    with pytest.raises(ValueError, match="job table"):
        restore(Supervision("ensemble", "e", lambda _j: task, 50), damaged)
    with pytest.raises(ValueError):
        restore(
            Supervision("ensemble", "e", lambda _j: task, 50), msgspec.structs.replace(current, version=99)
        )


def test_an_ensembles_inline_params_are_named_not_copied() -> None:
    """Version 3: the Opened record (the spec, with its inline params) is the journal's first
    record; the checkpoint keeps its crc, and restores only with that record."""
    import msgspec

    from corral.core.records import encode
    from corral.spec.model import Ensemble, JobTemplate, Process, Task

    ens = Ensemble(
        name="e", job=JobTemplate(cmd="echo {{params.n}}"), params={"n": [f"value-{i}" for i in range(5000)]}
    )
    opened = Opened("ensemble", "e", msgspec.to_builtins(ens), 1.0, "h", "b")
    task = Task("job", (Process("main", cmd="x"),))
    sup = Supervision("ensemble", "e", lambda _j: task, 5000)
    sup.apply(opened)
    data = encode_checkpoint(capture(sup, 1, 1.0))
    assert len(encode(opened)) > 45_000 and len(data) < 1_000  # it was both, 54 KB: the list twice
    restored = Supervision("ensemble", "e", lambda _j: task, 5000)
    restore(restored, decode_checkpoint(data), opened)
    assert restored.opened == opened
    other = msgspec.structs.replace(opened, spec={**opened.spec, "params": {"n": ["w"] * 5000}})
    for wrong in (other, None):
        with pytest.raises(ValueError, match="Opened"):
            restore(Supervision("ensemble", "e", lambda _j: task, 5000), decode_checkpoint(data), wrong)
    # version 2 carried the record itself: still restored from its own copy
    old = msgspec.structs.replace(capture(sup, 1, 1.0), version=2, opened=opened, opened_crc=0)
    restored = Supervision("ensemble", "e", lambda _j: task, 5000)
    restore(restored, decode_checkpoint(encode_checkpoint(old)))
    assert restored.opened is not None and encode(restored.opened) == encode(opened)  # tuples came back lists
