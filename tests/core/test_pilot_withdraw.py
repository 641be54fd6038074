"""core/pilot.py `stuck` and `withdrawals`: jobs prefetched behind long ones asked back for
good places elsewhere (a free slot, or a prefetch behind short jobs), oldest job first
(whether it waits in the launcher or on a worker), by example and by property."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given
from hypothesis import strategies as st

from corral.core.pilot import STUCK, Need, Room, cap, place, stuck, taken, withdrawals

END = 10_000.0


def room(cpus: int, jobs: int = 0, ends_at: float = END, is_stuck: bool = False) -> Room:
    return Room(cpus, 0, ends_at, jobs, float(jobs), 0, stuck=is_stuck)


def long_jobs(cpus: int, jobs: int) -> Room:
    """A worker whose slots all run long jobs (stuck), holding `jobs` in all."""
    return room(cpus, jobs, is_stuck=True)


def held(*jobs: int, need: Need | None = None) -> list[tuple[tuple[float, int], int, Need]]:
    """Prefetched jobs, each as old as its number."""
    return [((float(j), j), j, need or Need()) for j in jobs]


def line(*ages: int) -> list[tuple[tuple[float, int], Need]]:
    """The launcher's waiting jobs, each as old as the number given."""
    return [((float(a), a), Need()) for a in ages]


def test_a_worker_is_stuck_once_its_slots_all_run_and_it_started_nothing_for_a_while() -> None:
    assert stuck(4, 4, last_start=10.0, now=10.0 + STUCK)
    assert stuck(5, 4, last_start=10.0, now=10.0 + STUCK)
    assert not stuck(5, 4, last_start=10.0, now=10.0 + STUCK / 2)  # short jobs: one just started
    assert not stuck(3, 4, last_start=10.0, now=100.0)  # a free slot
    assert not stuck(5, 4, last_start=None, now=100.0)  # none started yet (just handed)


def test_a_stuck_worker_takes_no_prefetch() -> None:
    assert cap(room(4)) == 5 and cap(long_jobs(4, 4)) == 4
    assert place([(1, Need())], {"a": room(4, jobs=4)}, 0.0) == {1: "a"}
    assert place([(1, Need())], {"a": long_jobs(4, 4)}, 0.0) == {}
    # another worker behind short jobs takes it
    assert place([(1, Need())], {"a": long_jobs(4, 4), "b": room(4, jobs=4)}, 0.0) == {1: "b"}


def test_a_job_prefetched_behind_long_ones_is_asked_back_for_an_idle_worker() -> None:
    rooms = {"busy": long_jobs(4, 5), "idle": room(4)}
    assert withdrawals({"busy": held(7), "idle": []}, rooms, [], 0.0) == [("busy", 7, "idle")]


def test_it_goes_to_a_prefetch_behind_short_jobs_when_no_slot_is_free() -> None:
    # 'short' runs short jobs (not stuck) and holds one less than it may: job 7 waits there a moment
    rooms = {"busy": long_jobs(4, 5), "short": room(4, jobs=4)}
    assert withdrawals({"busy": held(7)}, rooms, [], 0.0) == [("busy", 7, "short")]
    rooms = {"busy": long_jobs(4, 5), "short": room(4, jobs=5)}  # its prefetch is taken
    assert withdrawals({"busy": held(7)}, rooms, [], 0.0) == []


def test_a_prefetched_job_older_than_the_waiting_ones_goes_first() -> None:
    rooms = {"busy": long_jobs(4, 5), "idle": room(1)}
    # job 7 was queued before jobs 20 and 21 reached the launcher: the one free slot is its
    assert withdrawals({"busy": held(7)}, rooms, line(20, 21), 0.0) == [("busy", 7, "idle")]


def test_a_prefetched_job_newer_than_the_waiting_ones_stays_until_they_have_a_place() -> None:
    rooms = {"busy": long_jobs(4, 5), "idle": room(1)}
    assert withdrawals({"busy": held(7)}, rooms, line(3), 0.0) == []
    # two free slots: job 3 (waiting) takes one, job 7 the other
    rooms = {"busy": long_jobs(4, 5), "idle": room(2)}
    assert withdrawals({"busy": held(7)}, rooms, line(3, 9), 0.0) == [("busy", 7, "idle")]


def test_the_oldest_prefetched_jobs_go_first_across_workers() -> None:
    rooms = {"a": long_jobs(4, 6), "b": long_jobs(4, 6), "idle": room(2)}
    asked = withdrawals({"a": held(10, 13), "b": held(11, 12)}, rooms, [], 0.0)
    assert asked == [("a", 10, "idle"), ("b", 11, "idle")]


def test_nothing_moves_from_a_worker_behind_short_jobs_or_with_a_free_slot() -> None:
    # not stuck: its prefetched job starts within a moment
    assert withdrawals({"busy": held(7)}, {"busy": room(4, jobs=5), "idle": room(4)}, [], 0.0) == []
    # no good place elsewhere (the other is stuck too, with no free slot)
    assert withdrawals({"a": held(7)}, {"a": long_jobs(4, 5), "b": long_jobs(4, 4)}, [], 0.0) == []
    # a worker with a free slot starts its queued jobs itself
    assert withdrawals({"a": held(1)}, {"a": room(4, jobs=3, is_stuck=True), "idle": room(1)}, [], 0.0) == []
    # a job whose walltime the idle worker cannot give stays
    short = {"busy": long_jobs(4, 5), "idle": room(4, ends_at=50.0)}
    assert withdrawals({"busy": held(7, need=Need(walltime=100))}, short, [], 0.0) == []
    # a worker not among the rooms (gone, not connected) gives nothing
    assert withdrawals({"gone": held(1)}, {"idle": room(2)}, [], 0.0) == []


def test_the_launchers_queue_is_read_no_further_than_the_good_places() -> None:
    read: list[int] = []

    def waiting() -> Iterator[tuple[tuple[float, int], Need]]:
        for age in range(100, 10_000):
            read.append(age)
            yield (float(age), age), Need()

    rooms = {"busy": long_jobs(4, 6), "idle": room(2)}  # 2 free slots, and a prefetch (cap 2)
    assert withdrawals({"busy": held(500, 501)}, rooms, waiting(), 0.0) == []
    assert len(read) <= 3  # two take the slots; the third shows the queue goes on


def test_a_worker_with_a_place_kept_for_a_job_on_its_way_takes_no_prefetch() -> None:
    full = room(4, jobs=3)
    assert place([(1, Need())], {"b": taken(full, Need())}, 0.0) == {1: "b"}  # prefetched
    # the same worker with that slot kept for a job asked back: it would start job 1 there
    assert place([(1, Need())], {"b": taken(full, Need(), kept=True)}, 0.0) == {}


ages = st.lists(st.integers(0, 10_000), unique=True, min_size=0, max_size=30)


@given(
    cpus=st.lists(st.integers(1, 8), min_size=1, max_size=4),
    jobs=st.lists(st.integers(0, 10), min_size=4, max_size=4),
    stuck_flags=st.lists(st.booleans(), min_size=4, max_size=4),
    all_ages=ages,
    split=st.lists(st.integers(0, 4), min_size=30, max_size=30),
)
def test_good_places_go_to_the_oldest_jobs_wherever_they_wait(
    cpus, jobs, stuck_flags, all_ages, split
) -> None:
    """Any workers, any prefetched and waiting jobs (no declared needs: any place fits any
    job): the jobs asked back are exactly the prefetched ones among the oldest (as many as
    good places: free slots, and prefetches on workers that are not stuck) of all waiting
    jobs and those prefetched on stuck workers with no free slot; each to another worker,
    never more than its good places, no job twice."""
    names = [f"w{i}" for i in range(len(cpus))]
    rooms = {n: room(cpus[i], jobs[i], is_stuck=stuck_flags[i]) for i, n in enumerate(names)}
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
    asked = withdrawals(queued, rooms, line(*waiting), 0.0)

    def places(r: Room) -> int:
        if r.jobs == 0:
            return cap(r)
        return max(0, r.cpus - r.jobs) + (0 if r.stuck else max(0, cap(r) - max(r.cpus, r.jobs)))

    good = {n: places(r) for n, r in rooms.items()}
    sources = {n for n, r in rooms.items() if r.stuck and r.jobs >= r.cpus}
    candidates = [j for n in sources for _, j, _ in queued[n]]
    oldest = sorted(candidates + waiting)[: sum(good.values())]
    assert sorted(job for _, job, _ in asked) == sorted(j for j in oldest if j in candidates)
    assert len({job for _, job, _ in asked}) == len(asked)
    for source, job, to in asked:
        assert source in sources and to != source
        assert job in [j for _, j, _ in queued[source]]
    for name, count in good.items():
        assert sum(1 for _, _, to in asked if to == name) <= count
