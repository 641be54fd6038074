"""core/pilot.py `withdrawals`: prefetched jobs asked back from busy workers for free slots
elsewhere, oldest job first (whether it waits in the launcher or behind a long job on a
worker), by example and by property."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given
from hypothesis import strategies as st

from corral.core.pilot import STUCK, Need, Room
from corral.core.pilot import withdrawals as core_withdrawals

END = 10_000.0


def withdrawals(queued, rooms, waiting, now, started=None):  # type: ignore[no-untyped-def]
    """core's, with every worker's last start long enough ago (unless told)."""
    if started is None:
        started = dict.fromkeys(rooms, now - STUCK)
    return core_withdrawals(queued, rooms, waiting, now, started)


def room(cpus: int, jobs: int = 0, ends_at: float = END) -> Room:
    return Room(cpus, 0, ends_at, jobs, float(jobs), 0)


def held(*jobs: int, need: Need | None = None) -> list[tuple[tuple[float, int], int, Need]]:
    """Prefetched jobs, each as old as its number."""
    return [((float(j), j), j, need or Need()) for j in jobs]


def line(*ages: int) -> list[tuple[tuple[float, int], Need]]:
    """The launcher's waiting jobs, each as old as the number given."""
    return [((float(a), a), Need()) for a in ages]


def test_a_job_waiting_behind_long_ones_is_asked_back_for_an_idle_worker() -> None:
    rooms = {"busy": room(4, jobs=5), "idle": room(4)}
    assert withdrawals({"busy": held(7), "idle": []}, rooms, [], 0.0) == [("busy", 7, "idle")]


def test_a_prefetched_job_older_than_the_waiting_ones_goes_first_to_a_free_slot() -> None:
    rooms = {"busy": room(4, jobs=5), "idle": room(1)}
    # job 7 was queued before jobs 20 and 21 reached the launcher: the one free slot is its
    assert withdrawals({"busy": held(7)}, rooms, line(20, 21), 0.0) == [("busy", 7, "idle")]


def test_a_prefetched_job_newer_than_the_waiting_ones_stays_until_they_have_a_slot() -> None:
    rooms = {"busy": room(4, jobs=5), "idle": room(1)}
    assert withdrawals({"busy": held(7)}, rooms, line(3), 0.0) == []
    # two free slots: job 3 (waiting) takes one, job 7 the other
    rooms = {"busy": room(4, jobs=5), "idle": room(2)}
    assert withdrawals({"busy": held(7)}, rooms, line(3, 9), 0.0) == [("busy", 7, "idle")]


def test_the_oldest_prefetched_jobs_go_first_across_workers() -> None:
    rooms = {"a": room(4, jobs=6), "b": room(4, jobs=6), "idle": room(2)}
    asked = withdrawals({"a": held(10, 13), "b": held(11, 12)}, rooms, [], 0.0)
    assert asked == [("a", 10, "idle"), ("b", 11, "idle")]


def test_nothing_moves_without_a_free_slot_or_from_a_worker_with_one() -> None:
    assert withdrawals({"busy": held(7)}, {"busy": room(4, jobs=5), "b2": room(4, jobs=4)}, [], 0.0) == []
    # a worker with a free slot starts its queued jobs itself
    assert withdrawals({"a": held(1)}, {"a": room(4, jobs=3), "idle": room(1)}, [], 0.0) == []
    # a job whose walltime the idle worker cannot give stays
    short = {"busy": room(4, jobs=5), "idle": room(4, ends_at=50.0)}
    assert withdrawals({"busy": held(7, need=Need(walltime=100))}, short, [], 0.0) == []
    # a worker not among the rooms (gone, not connected) gives nothing
    assert withdrawals({"gone": held(1)}, {"idle": room(2)}, [], 0.0) == []


def test_nothing_is_asked_back_from_a_worker_that_started_a_job_lately() -> None:
    rooms = {"busy": room(4, jobs=5), "idle": room(4)}
    # its running jobs are short: it started one a moment ago, job 7 starts there soon
    assert withdrawals({"busy": held(7)}, rooms, [], 10.0, {"busy": 10.0 - STUCK / 2}) == []
    # none of its jobs has started yet (it just got them): nothing moves either
    assert withdrawals({"busy": held(7)}, rooms, [], 10.0, {}) == []
    assert withdrawals({"busy": held(7)}, rooms, [], 10.0, {"busy": 10.0 - STUCK}) == [("busy", 7, "idle")]


def test_the_launchers_queue_is_read_no_further_than_the_free_slots() -> None:
    read: list[int] = []

    def waiting() -> Iterator[tuple[tuple[float, int], Need]]:
        for age in range(100, 10_000):
            read.append(age)
            yield (float(age), age), Need()

    rooms = {"busy": room(4, jobs=6), "idle": room(3)}
    assert withdrawals({"busy": held(500, 501)}, rooms, waiting(), 0.0) == []
    assert len(read) <= 4  # three take the free slots; the fourth shows the queue goes on


ages = st.lists(st.integers(0, 10_000), unique=True, min_size=0, max_size=30)


@given(
    cpus=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    jobs=st.lists(st.integers(0, 9), min_size=4, max_size=4),
    all_ages=ages,
    split=st.lists(st.integers(0, 4), min_size=30, max_size=30),
    stuck=st.lists(st.booleans(), min_size=4, max_size=4),
)
def test_free_slots_go_to_the_oldest_jobs_wherever_they_wait(cpus, jobs, all_ages, split, stuck) -> None:
    """Any workers, any prefetched and waiting jobs (no declared needs: any slot fits any job):
    the jobs asked back are exactly the prefetched ones among the oldest (as many as free
    slots) of all waiting jobs and those prefetched by workers with no free slot that started
    nothing for STUCK seconds; each to another worker's free slot, never more than it has, no
    job twice."""
    names = [f"w{i}" for i in range(len(cpus))]
    rooms = {n: room(c, jobs[i]) for i, (n, c) in enumerate(zip(names, cpus, strict=False))}
    queued: dict[str, list[tuple[tuple[float, int], int, Need]]] = {n: [] for n in names}
    waiting: list[int] = []
    for age, where in zip(all_ages, split, strict=False):
        if where < len(names):
            queued[names[where]].append(((float(age), age), age, Need()))
        else:
            waiting.append(age)
    for jobs_held in queued.values():
        jobs_held.sort()
    waiting.sort()
    started = {n: (-STUCK if stuck[i] else -STUCK / 2) for i, n in enumerate(names)}
    asked = withdrawals(queued, rooms, line(*waiting), 0.0, started)

    free = {n: max(0, r.cpus - r.jobs) for n, r in rooms.items()}
    busy = {n for n, f in free.items() if f == 0 and started[n] <= -STUCK}
    candidates = [j for n in busy for _, j, _ in queued[n]]
    oldest = sorted(candidates + waiting)[: sum(free.values())]
    assert sorted(job for _, job, _ in asked) == sorted(j for j in oldest if j in candidates)
    assert len({job for _, job, _ in asked}) == len(asked)
    for source, job, to in asked:
        assert source in busy and free[to] > 0 and to != source
        assert job in [j for _, j, _ in queued[source]]
    for name, slots in free.items():
        assert sum(1 for _, _, to in asked if to == name) <= slots


def test_a_worker_with_a_slot_kept_for_a_job_on_its_way_takes_no_prefetch() -> None:
    from corral.core.pilot import place, taken

    full = room(4, jobs=3)
    assert place([(1, Need())], {"b": taken(full, Need())}, 0.0) == {1: "b"}  # prefetched
    # the same worker with that slot kept for a job asked back: it would start job 1 there
    assert place([(1, Need())], {"b": taken(full, Need(), kept=True)}, 0.0) == {}
