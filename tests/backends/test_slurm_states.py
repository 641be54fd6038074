"""Every Slurm state, through the backend's map and the core's judgement (core/outcome.py).

Each row: what a job that Slurm reports in this state becomes when its node journal has no
end (the node's supervisor died with the job), and whether `requeue: true` requeues it.
"""

from __future__ import annotations

import pytest

from corral.backends.slurm import SEEN
from corral.backends.slurm_states import SlurmState
from corral.core.outcome import Observation, judge
from corral.core.states import TaskState

S, T = SlurmState, TaskState
# state -> (verdict for a SUBMITTED job whose node journal is silent, requeued?)
EXPECTED: dict[SlurmState, tuple[TaskState | None, bool]] = {
    S.PENDING: (None, False),
    S.CONFIGURING: (None, False),
    S.REQUEUED: (None, False),
    S.REQUEUE_HOLD: (None, False),
    S.REQUEUE_FED: (None, False),
    S.SPECIAL_EXIT: (None, False),
    S.RESIZING: (None, False),
    S.STOPPED: (None, False),
    S.UNKNOWN: (None, False),
    S.RUNNING: (T.ACTIVE, False),
    S.COMPLETING: (T.ACTIVE, False),
    S.SUSPENDED: (T.ACTIVE, False),
    S.SIGNALING: (T.ACTIVE, False),
    S.STAGE_OUT: (T.ACTIVE, False),
    S.COMPLETED: (T.LOST, False),
    S.FAILED: (T.FAILED, False),
    S.CANCELLED: (T.KILLED, False),
    S.TIMEOUT: (T.FAILED, True),
    S.PREEMPTED: (T.LOST, True),
    S.NODE_FAIL: (T.LOST, True),
    S.BOOT_FAIL: (T.LOST, True),
    S.OUT_OF_MEMORY: (T.FAILED, False),
    S.DEADLINE: (T.FAILED, False),
    S.REVOKED: (T.LOST, False),
}


def test_the_table_covers_every_slurm_state() -> None:
    assert set(SEEN) == set(SlurmState) == set(EXPECTED)


@pytest.mark.parametrize("state", list(SlurmState), ids=lambda s: s.value)
def test_every_slurm_state_with_a_silent_node_journal(state: SlurmState) -> None:
    want, requeued = EXPECTED[state]
    verdict = judge(Observation(SEEN[state], TaskState.SUBMITTED, requeue=True))
    if want is None:
        assert verdict is None
        return
    assert verdict is not None
    assert verdict.state is want
    assert verdict.requeue is requeued
    if want is not TaskState.ACTIVE:
        assert state.value in verdict.reason  # the display text names Slurm's word


@pytest.mark.parametrize("state", list(SlurmState), ids=lambda s: s.value)
def test_every_ended_slurm_state_when_the_node_journal_has_an_end(state: SlurmState) -> None:
    """The node's journal is authoritative, except for ends that are no fault of the job
    (its supervisor was killed with it): then Slurm's word decides."""
    want, requeued = EXPECTED[state]
    if want in (None, TaskState.ACTIVE):
        return
    obs = Observation(SEEN[state], TaskState.ACTIVE, TaskState.SUCCESS, 0, requeue=True)
    verdict = judge(obs)
    assert verdict is not None
    assert verdict.state is (want if requeued else TaskState.SUCCESS)
    assert verdict.exit_code == 0


@pytest.mark.parametrize("state", list(SlurmState), ids=lambda s: s.value)
def test_every_ended_slurm_state_after_corral_cancelled(state: SlurmState) -> None:
    """A job corral cancelled ends KILLED, unless it failed on its own or succeeded first."""
    want, _ = EXPECTED[state]
    if want in (None, TaskState.ACTIVE):
        return
    verdict = judge(
        Observation(SEEN[state], TaskState.ACTIVE, cancelled=True, requeue=True, kill_requested=True)
    )
    assert verdict is not None
    assert verdict.state is (TaskState.FAILED if want is TaskState.FAILED else TaskState.KILLED)
    assert not verdict.requeue  # a kill of the whole task never requeues
