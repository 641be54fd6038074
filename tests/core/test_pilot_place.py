"""core/pilot.py `place`: which worker takes each waiting job (free slots first, a small
prefetch, walltime left), by example and by property."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from corral.core.pilot import Need, Room, cap, place, runs_now, taken

END = 10_000.0


def room(cpus: int, jobs: int = 0, ends_at: float = END) -> Room:
    return Room(cpus, 0, ends_at, jobs, float(jobs), 0)


def test_a_job_goes_to_an_idle_worker_not_behind_a_busy_one() -> None:
    # w1 runs a long job in its only slot; w2 is idle: the short job goes to w2
    assert place([(5, Need())], {"w1": room(1, jobs=1), "w2": room(1)}, 0.0) == {5: "w2"}


def test_jobs_spread_over_free_slots_before_any_is_prefetched() -> None:
    picks = place([(j, Need()) for j in range(4)], {"a": room(2), "b": room(2)}, 0.0)
    assert sorted(picks.values()) == ["a", "a", "b", "b"]


def test_a_worker_of_few_cpus_holds_no_prefetch_so_a_job_waits_in_the_launcher() -> None:
    # both single-CPU workers busy: the job is not queued behind either (either may run long)
    assert place([(1, Need())], {"a": room(1, jobs=1), "b": room(1, jobs=1)}, 0.0) == {}


def test_a_big_worker_prefetches_a_quarter_of_its_cpus() -> None:
    assert cap(room(16)) == 20 and cap(room(3)) == 3
    picks = place([(j, Need()) for j in range(30)], {"a": room(16)}, 0.0)
    assert list(picks) == list(range(20))


def test_a_job_whose_walltime_outlasts_every_worker_waits_and_the_next_goes() -> None:
    rooms = {"short": room(2, ends_at=100.0), "long": room(1, jobs=1)}
    picks = place([(1, Need(walltime=200)), (2, Need(walltime=50))], rooms, 0.0)
    assert picks == {2: "short"}  # job 1 fits only on 'long', which has no free slot nor prefetch


def test_place_reads_no_further_once_every_worker_is_full() -> None:
    read: list[int] = []

    def jobs():  # type: ignore[no-untyped-def]
        for j in range(1000):
            read.append(j)
            yield j, Need()

    assert len(place(jobs(), {"a": room(4)}, 0.0)) == 5
    assert len(read) == 5
    assert place(iter([(1, Need())]), {}, 0.0) == {}


rooms_st = st.dictionaries(
    st.sampled_from("abcd"),
    st.builds(
        lambda cpus, jobs, end: room(cpus, jobs, end),
        st.integers(1, 8),
        st.integers(0, 10),
        st.sampled_from([50.0, 500.0, END]),
    ),
    max_size=4,
)
needs_st = st.lists(
    st.builds(
        Need, st.sampled_from([0.0, 1.0, 2.0]), st.just(0), st.sampled_from([None, 10.0, 100.0, 900.0])
    ),
    max_size=40,
)


@given(rooms=rooms_st, needs=needs_st)
def test_place_never_overfills_and_prefetches_only_when_no_slot_is_free(rooms, needs) -> None:
    picks = place(enumerate(needs), rooms, 0.0)
    left = dict(rooms)
    for job, need in enumerate(needs):
        name = picks.get(job)
        if name is None:
            continue
        assert left[name].jobs < cap(left[name]) or left[name].jobs == 0
        if not runs_now(need, left[name], 0.0):
            # prefetched: no worker could have started it at once
            assert not any(runs_now(need, r, 0.0) for r in left.values())
        assert need.walltime is None or need.walltime + 5.0 <= left[name].ends_at
        left[name] = taken(left[name], need)
