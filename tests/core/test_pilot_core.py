"""core/pilot.py: what the launcher decides about its pilot workers, by table and by property."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from corral.core.outcome import Seen
from corral.core.pilot import (
    ENDED,
    PREFETCH,
    VANISHED_GRACE,
    Need,
    Room,
    WorkerVerdict,
    WorkerView,
    fits,
    judge_worker,
    reported_end,
    should_stop,
    unfit_reason,
    wanted_workers,
)
from corral.core.states import TaskState

SILENCE = 30.0


def view(seen: Seen | None, heard: float | None = 100.0, cancelled: bool = False) -> WorkerView:
    return WorkerView(seen, submitted_at=0.0, heard_at=heard, running_since=10.0, cancelled=cancelled)


def test_a_worker_whose_slurm_job_ended_is_gone() -> None:
    for seen in ENDED:
        assert judge_worker(view(seen), 101.0, SILENCE) is WorkerVerdict.GONE, seen


def test_a_worker_heard_recently_is_alive_whatever_slurm_cannot_say() -> None:
    for seen in (Seen.RUNNING, Seen.QUEUED, None):
        assert judge_worker(view(seen), 101.0, SILENCE) is WorkerVerdict.ALIVE


def test_a_silent_running_worker_is_cancelled_then_waited_for() -> None:
    now = 100.0 + SILENCE
    assert judge_worker(view(Seen.RUNNING), now, SILENCE) is WorkerVerdict.CANCEL
    assert judge_worker(view(Seen.RUNNING, cancelled=True), now, SILENCE) is WorkerVerdict.WAIT
    # a failed poll (None) never makes a worker gone: only a cancel, and then a wait
    assert judge_worker(view(None), now, SILENCE) is WorkerVerdict.CANCEL
    assert judge_worker(view(None, cancelled=True), now + 1e6, SILENCE) is WorkerVerdict.WAIT


def test_a_worker_missing_from_squeue_is_gone_only_after_the_grace() -> None:
    assert judge_worker(view(Seen.GONE), VANISHED_GRACE - 1, SILENCE) is WorkerVerdict.WAIT
    assert judge_worker(view(Seen.GONE), VANISHED_GRACE + 1, SILENCE) is WorkerVerdict.GONE


def test_a_queued_worker_that_never_connected_is_alive() -> None:
    assert judge_worker(view(Seen.QUEUED, heard=None), 1e6, SILENCE) is WorkerVerdict.ALIVE


@given(
    seen=st.sampled_from([*Seen, None]),
    heard=st.one_of(st.none(), st.floats(0, 1000)),
    cancelled=st.booleans(),
    now=st.floats(0, 2000),
)
def test_gone_only_when_slurm_says_the_allocation_is_over(seen, heard, cancelled, now) -> None:
    """Never LOST while the first run may still be alive: GONE needs Slurm's word."""
    verdict = judge_worker(WorkerView(seen, 0.0, heard, None, cancelled), now, SILENCE)
    if verdict is WorkerVerdict.GONE:
        assert seen in ENDED or seen is Seen.GONE
    if cancelled:
        assert verdict is not WorkerVerdict.CANCEL


def test_fits_by_slots_cpus_memory_and_walltime() -> None:
    room = Room(cpus=4, memory=1000, ends_at=1000.0)
    assert fits(Need(), room, 0.0)
    assert fits(Need(cpus=64), room, 0.0)  # alone, a job may exceed the worker (as locally)
    busy = Room(4, 1000, 1000.0, jobs=4 * PREFETCH)
    assert not fits(Need(), busy, 0.0)
    assert not fits(Need(cpus=2), Room(4, 1000, 1000.0, jobs=1, cpus_used=7), 0.0)
    assert not fits(Need(memory=600), Room(4, 1000, 1000.0, jobs=1, memory_used=1500), 0.0)
    assert fits(Need(memory=600), Room(4, 0, 1000.0, jobs=1, memory_used=1500), 0.0)  # unchecked
    assert not fits(Need(walltime=990), room, 100.0)  # outlasts the allocation
    assert fits(Need(walltime=100), room, 100.0)


def test_unfit_reason_names_the_field() -> None:
    assert unfit_reason(Need(), 4, 0, 600) is None
    assert "slurm.pilot.cpus" in (unfit_reason(Need(cpus=8), 4, 0, 600) or "")
    assert "slurm.pilot.memory" in (unfit_reason(Need(memory=10), 4, 5, 600) or "")
    assert "slurm.pilot.time" in (unfit_reason(Need(walltime=600), 4, 0, 600) or "")


def test_wanted_workers_follow_demand() -> None:
    assert wanted_workers(waiting=0, starting=0, alive=0, cpus=4, step=2, limit=8) == 0
    assert wanted_workers(waiting=3, starting=0, alive=0, cpus=4, step=2, limit=8) == 1
    assert wanted_workers(waiting=100, starting=0, alive=0, cpus=4, step=2, limit=8) == 2
    assert wanted_workers(waiting=100, starting=1, alive=1, cpus=4, step=2, limit=8) == 0
    assert wanted_workers(waiting=100, starting=0, alive=7, cpus=4, step=2, limit=8) == 1
    assert wanted_workers(waiting=100, starting=0, alive=8, cpus=4, step=2, limit=8) == 0


@given(st.integers(0, 10**6), st.integers(0, 50), st.integers(0, 50), st.integers(1, 64), st.integers(1, 50))
def test_never_more_workers_than_the_limit(waiting, starting, alive, cpus, step) -> None:
    limit = 50
    assert 0 <= wanted_workers(waiting, starting, alive, cpus, step, limit) <= max(0, limit - alive)


def test_idle_workers_leave_after_the_timeout_unless_jobs_wait() -> None:
    assert should_stop(0, 0.0, 60.0, 60.0, 0)
    assert not should_stop(0, 0.0, 59.0, 60.0, 0)
    assert not should_stop(1, 0.0, 600.0, 60.0, 0)
    assert not should_stop(0, 0.0, 600.0, 60.0, 3)
    assert not should_stop(0, None, 600.0, 60.0, 0)


def test_a_kill_nobody_asked_for_is_the_worker_going_away() -> None:
    assert reported_end(TaskState.KILLED, kill_asked=False)[0] is TaskState.LOST
    assert reported_end(TaskState.KILLED, kill_asked=True) == (TaskState.KILLED, "")
    assert reported_end(TaskState.FAILED, kill_asked=False) == (TaskState.FAILED, "")
    assert reported_end(TaskState.SUCCESS, kill_asked=True) == (TaskState.SUCCESS, "")
