"""Property: no fold of ANY record sequence produces a transition the tables of core/states.py
forbid. Records are drawn at random (valid or not, in any order); the fold either rejects one
(FoldError: the journal is inconsistent, a reader stops there) or every change of a task's,
a job's, an ensemble's or a run's state it made is one the tables allow."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.core.records import Cause, Record, Request, RunUpdate, Signal, Transition
from corral.core.states import (
    ENSEMBLE,
    ENSEMBLE_TRANSITIONS,
    RUN_TRANSITIONS,
    TASK_TRANSITIONS,
    RunState,
    TaskState,
)
from corral.core.supervision import Policy, Supervision
from corral.core.task import FoldError
from corral.spec.model import Process, Task

SETTINGS = settings(
    max_examples=int(os.environ.get("CORE_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TASK = Task("t", (Process("a", cmd="x"), Process("b", cmd="x", final=True)))
JOBS = 3
ACTIONS = ["kill", "lose", "pause", "resume", "halt", "retry-failed"]

times = st.floats(0, 100, allow_nan=False)
jobs = st.integers(0, JOBS - 1)


def transitions(own: bool) -> st.SearchStrategy[Transition]:
    job = st.sampled_from([ENSEMBLE, *range(JOBS)]) if own else jobs
    return st.builds(
        Transition,
        job,
        st.sampled_from([s.value for s in TaskState]),
        times,
        st.sampled_from(["", "failed", "deadlock", "retry", "requeue", "killed"]),
        st.integers(0, 3),
        st.none() | st.integers(-1, 2),
        st.sampled_from(list(Cause)),
    )


run_updates = st.builds(
    RunUpdate,
    jobs,
    st.sampled_from(["a", "b"]),
    st.integers(0, 2),
    st.sampled_from([s.value for s in RunState]),
    times,
    exit_code=st.none() | st.integers(0, 2),
)
signals = st.builds(
    Signal, jobs, st.sampled_from(["a", "b"]), st.integers(0, 2), st.sampled_from([15, 9]), times
)
requests = st.builds(Request, st.sampled_from(ACTIONS), times, st.none() | jobs)


def records(own: bool) -> st.SearchStrategy[list[Record]]:
    one: st.SearchStrategy[Record] = st.one_of(transitions(own), run_updates, signals, requests)
    return st.lists(one, max_size=40)


def _snapshot(
    sup: Supervision,
) -> tuple[TaskState, dict[int, TaskState], dict[tuple[int, str, int], RunState]]:
    runs: dict[tuple[int, str, int], RunState] = {}
    for job, rt in sup.jobs.items():
        for proc in rt.processes.values():
            for run in proc.runs:
                runs[(job, run.process, run.run)] = run.state
    return sup.state, {j: sup.job_state(j) for j in range(sup.total)}, runs


def _check_fold(sup: Supervision, recs: list[Record]) -> None:
    before = _snapshot(sup)
    for rec in recs:
        try:
            sup.apply(rec)
        except FoldError:
            return  # rejected: the reader stops at this record, nothing after it is folded
        after = _snapshot(sup)
        own_table = ENSEMBLE_TRANSITIONS if sup.kind == "ensemble" else TASK_TRANSITIONS
        if after[0] is not before[0]:
            assert after[0] in own_table[before[0]], (before[0], after[0], rec)
        for job, state in after[1].items():
            old = before[1][job]
            if state is not old:
                assert state in TASK_TRANSITIONS[old], (job, old, state, rec)
        for key, state in after[2].items():
            old_run = before[2].get(key, RunState.WAITING)  # a run is born LAUNCHING from WAITING
            if state is not old_run:
                assert state in RUN_TRANSITIONS[old_run], (key, old_run, state, rec)
        before = after


@SETTINGS
@given(records(own=False))
def test_no_fold_of_a_task_breaks_the_tables(recs: list[Record]) -> None:
    sup = Supervision("task", "t", lambda _j: TASK, 1, keep_finished=True)
    _check_fold(sup, [r for r in recs if getattr(r, "job", 0) in (0, None)])


@SETTINGS
@given(records(own=True), st.booleans())
def test_no_fold_of_an_ensemble_breaks_the_tables(recs: list[Record], keep: bool) -> None:
    sup = Supervision("ensemble", "e", lambda _j: TASK, JOBS, Policy(retries=1), keep_finished=keep)
    _check_fold(sup, recs)


@SETTINGS
@given(records(own=True))
def test_no_fold_of_a_remote_ensemble_breaks_the_tables(recs: list[Record]) -> None:
    sup = Supervision("ensemble", "e", lambda _j: TASK, JOBS, Policy(retries=1), remote=True)
    _check_fold(sup, recs)


def test_the_ensemble_table_is_enforced() -> None:
    """The check the property relies on exists: an ensemble cannot go back to PENDING."""
    sup = Supervision("ensemble", "e", lambda _j: TASK, 1)
    sup.apply(Transition(ENSEMBLE, "ACTIVE", 0.0))
    try:
        sup.apply(Transition(ENSEMBLE, "PENDING", 1.0))
    except FoldError as exc:
        assert "ensemble ACTIVE -> PENDING is not allowed" in str(exc)
    else:
        raise AssertionError("the fold accepted ACTIVE -> PENDING for an ensemble")
