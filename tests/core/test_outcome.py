"""core/outcome.py: a batch system's observation -> the job's next record (pure)."""

from __future__ import annotations

from corral.core.outcome import ENDS, MAX_REQUEUES, REQUEUE, Observation, Seen, Verdict, judge
from corral.core.states import TASK_TERMINAL, TaskState


def test_every_end_has_a_terminal_outcome() -> None:
    ends = set(Seen) - {Seen.QUEUED, Seen.RUNNING, Seen.GONE}
    assert set(ENDS) == ends
    assert all(state in TASK_TERMINAL for state in ENDS.values())
    assert ends >= REQUEUE


def test_running_activates_a_submitted_job_once() -> None:
    assert judge(Observation(Seen.RUNNING, TaskState.SUBMITTED)) == Verdict(TaskState.ACTIVE)
    assert judge(Observation(Seen.RUNNING, TaskState.ACTIVE)) is None


def test_a_fresh_submission_not_listed_yet_is_not_gone() -> None:
    assert judge(Observation(Seen.GONE, TaskState.SUBMITTED, recent=True)) is None
    lost = judge(Observation(Seen.GONE, TaskState.SUBMITTED))
    assert lost is not None and lost.state is TaskState.LOST


def test_gone_with_a_node_end_takes_the_node_end_and_exit_code() -> None:
    v = judge(Observation(Seen.GONE, TaskState.ACTIVE, TaskState.FAILED, 3, recent=True))
    assert v == Verdict(TaskState.FAILED, "", 3, False)


def test_gone_after_a_cancel_is_killed() -> None:
    v = judge(Observation(Seen.GONE, TaskState.ACTIVE, cancelled=True))
    assert v is not None and v.state is TaskState.KILLED


def test_a_cancel_that_raced_the_node_journal_is_a_kill() -> None:
    # scancel's SIGTERM reached the run before the node's supervisor recorded the kill
    v = judge(Observation(Seen.CANCELLED, TaskState.ACTIVE, TaskState.FAILED, 143, cancelled=True))
    assert v is not None and v.state is TaskState.KILLED and v.exit_code == 143


def test_a_job_that_succeeded_before_the_cancel_keeps_its_success() -> None:
    v = judge(Observation(Seen.CANCELLED, TaskState.ACTIVE, TaskState.SUCCESS, 0, cancelled=True))
    assert v is not None and v.state is TaskState.SUCCESS


def test_requeues_have_their_own_budget() -> None:
    for used in range(MAX_REQUEUES + 2):
        v = judge(Observation(Seen.PREEMPTED, TaskState.ACTIVE, requeue=True, requeues=used))
        assert v is not None and v.state is TaskState.LOST
        assert v.requeue is (used < MAX_REQUEUES)


def test_no_requeue_unless_the_spec_asks() -> None:
    v = judge(Observation(Seen.NODE_FAIL, TaskState.ACTIVE))
    assert v is not None and not v.requeue


def test_reason_names_the_batch_system() -> None:
    v = judge(Observation(Seen.TIMEOUT, TaskState.ACTIVE, source="pbs"))
    assert v is not None and v.reason == "pbs TIMEOUT"
