"""The choice of what gc removes (pure) and its parts of a task directory."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from corral.core.states import TaskState
from corral.supervisor.gc import Candidate, Conditions, Survey, select


def _survey(ages: list[float], size: int = 100, other: int = 0, now: float = 1000.0) -> Survey:
    found = [Candidate(f"t{i}", "task", TaskState.SUCCESS, now - age, size) for i, age in enumerate(ages)]
    found.sort(key=lambda c: c.finished_at)
    return Survey(found, size * len(ages) + other)


def ids(chosen: list[Candidate]) -> list[str]:
    return [c.id for c in chosen]


def test_no_goal_selects_everything_that_matched_oldest_first():
    assert ids(select(_survey([5, 50, 20]), Conditions(), 1000.0)) == ["t1", "t2", "t0"]


def test_older_than_selects_only_what_ended_before():
    assert ids(select(_survey([5, 50, 20]), Conditions(older_than=10), 1000.0)) == ["t1", "t2"]


def test_keep_spares_the_newest():
    assert ids(select(_survey([5, 50, 20, 30]), Conditions(keep=1), 1000.0)) == ["t1", "t3", "t2"]
    assert select(_survey([5, 50]), Conditions(keep=5), 1000.0) == []


def test_max_space_counts_unfinished_tasks_it_cannot_remove():
    # 3 finished tasks of 100 bytes and 250 bytes of live ones: 550 used, 400 allowed
    assert ids(select(_survey([5, 50, 20], other=250), Conditions(max_space=400), 1000.0)) == ["t1", "t2"]
    # an impossible budget removes every finished task and no more
    assert len(select(_survey([5, 50], other=10_000), Conditions(max_space=0), 1000.0)) == 2


def test_goals_together_are_the_union_of_what_each_needs():
    chosen = select(_survey([5, 50, 20, 30]), Conditions(older_than=40, keep=2, max_space=10_000), 1000.0)
    assert ids(chosen) == ["t1", "t3"]


@given(
    ages=st.lists(st.floats(0, 1e6), max_size=30),
    keep=st.none() | st.integers(0, 40),
    older=st.none() | st.floats(0, 1e6),
    budget=st.none() | st.integers(0, 5000),
)
def test_selection_is_oldest_first_and_meets_every_goal(ages, keep, older, budget):
    survey = _survey(ages)
    cond = Conditions(older_than=older, keep=keep, max_space=budget)
    chosen = select(survey, cond, 1e6)
    assert chosen == [c for c in survey.candidates if c in chosen]  # a prefix-ordered subset
    left = [c for c in survey.candidates if c not in chosen]
    if keep is not None:
        assert len(left) <= keep
    if older is not None:
        assert all(1e6 - c.finished_at <= older for c in left)
    if budget is not None:
        assert survey.total_space - sum(c.size for c in chosen) <= budget or not left
