"""Pilot workers: what the launcher decides about them (pure: no I/O, time comes in).

A pilot worker is a long Slurm job running `corral worker`, which takes jobs of an ensemble
over TCP. The launcher's backend (backends/pilot.py) observes its workers (Slurm's state, the
connection, when a worker was last heard of) and asks this module:

- `judge_worker`: is a worker alive, to be waited for, to be cancelled, or gone (its jobs LOST)?
  A job is judged LOST only once its worker cannot run it any more (Slurm says the worker's job
  ended, or squeue forgot it): never while the first run may still be alive.
- `place` (with `fits`, `runs_now`): which worker takes each waiting job (a free slot first,
  a small prefetch, declared resources, walltime left); `unfit_reason`: no worker ever could.
- `withdrawals`: prefetched jobs asked back for a free slot elsewhere, oldest job first.
- `wanted_workers`: how many worker jobs to submit for the jobs waiting.
- `reported_end`: a worker's report of a job's end -> the job's state in the launcher's journal.
- `should_stop`: an idle worker that may leave.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from corral.core.outcome import Seen
from corral.core.states import TaskState
from corral.spec.model import Task

VANISHED_GRACE = 30.0  # a worker missing from squeue this soon after submission is still coming
WALLTIME_MARGIN = 5.0  # seconds kept free at the end of a worker's allocation
PREFETCH = 2  # the launcher admits up to this many times its workers' CPUs in jobs
PREFETCH_SHARE = 4  # a worker holds its CPUs' worth of jobs plus one per this many CPUs
STUCK = 2.0  # a worker that started no job for this long holds its prefetched jobs behind long ones


class WorkerVerdict(enum.Enum):
    ALIVE = "alive"  # heard of recently (or still queued): hand it jobs if connected
    WAIT = "wait"  # cannot tell yet (cut off, Slurm still lists it): decide nothing
    CANCEL = "cancel"  # silent too long while Slurm says it runs: scancel it, then wait for its end
    GONE = "gone"  # its allocation ended: its jobs that did not report an end are LOST


ENDED = frozenset(Seen) - {Seen.QUEUED, Seen.RUNNING, Seen.GONE}  # Slurm's ends of a worker job


@dataclass(frozen=True, slots=True)
class WorkerView:
    """What the launcher knows of one worker at `now`."""

    seen: Seen | None  # Slurm's state (None: not polled yet, or the poll failed)
    submitted_at: float
    heard_at: float | None  # last message received (None: never connected)
    running_since: float | None  # first seen RUNNING by Slurm (or first heard)
    cancelled: bool  # we asked Slurm to cancel it


def judge_worker(view: WorkerView, now: float, silence: float) -> WorkerVerdict:
    """Alive, wait, cancel or gone: the table of the README's Slurm section (pilot workers)."""
    seen = view.seen
    if seen in ENDED:
        return WorkerVerdict.GONE
    if seen is Seen.GONE:
        # squeue forgot it (or never listed it yet): gone once it had time to appear
        if now - view.submitted_at < VANISHED_GRACE:
            return WorkerVerdict.WAIT
        return WorkerVerdict.GONE
    if seen is Seen.QUEUED and view.heard_at is None:
        return WorkerVerdict.ALIVE  # not started: it holds no job
    # running by Slurm's word, or not known (a failed poll): only silence can tell
    last = max(t for t in (view.heard_at, view.running_since, view.submitted_at) if t is not None)
    if now - last < silence:
        return WorkerVerdict.ALIVE
    return WorkerVerdict.WAIT if view.cancelled else WorkerVerdict.CANCEL


@dataclass(frozen=True, slots=True)
class Need:
    """A job's declared resources (0: not declared)."""

    cpus: float = 0.0
    memory: int = 0
    walltime: float | None = None


def need_of(task: Task) -> Need:
    res = task.resources
    return Need(res.cpus, res.memory, res.walltime)


@dataclass(frozen=True, slots=True)
class Room:
    """One worker's capacity and what its jobs take (running and queued there)."""

    cpus: int
    memory: int  # 0: not checked
    ends_at: float  # its allocation's end
    jobs: int = 0
    cpus_used: float = 0.0
    memory_used: int = 0
    kept: int = 0  # of `jobs`: slots kept for jobs asked back from other workers (withdrawals)
    stuck: bool = False  # its jobs are long ones (`stuck`): a job prefetched there would wait


def stuck(held: int, cpus: int, last_start: float | None, now: float) -> bool:
    """A worker whose slots all run and that started no job for STUCK seconds runs long jobs:
    a job prefetched there waits behind them (behind short ones it starts within a moment)."""
    return held >= cpus and last_start is not None and now - last_start >= STUCK


def cap(room: Room) -> int:
    """Jobs a worker holds at most: a slot each, plus a small prefetch of `cpus // PREFETCH_SHARE`
    (none below that many CPUs), which waits there to hide the round trip. None on a stuck
    worker (a job would wait behind long ones; one prefetched before is moved by `withdrawals`),
    nor while a slot is kept there for a job asked back (the worker would start the prefetched
    job in it)."""
    return room.cpus + (0 if room.kept or room.stuck else room.cpus // PREFETCH_SHARE)


def in_time(need: Need, room: Room, now: float) -> bool:
    """The job's declared walltime (plus a margin) ends before the worker's allocation does."""
    return need.walltime is None or now + need.walltime + WALLTIME_MARGIN <= room.ends_at


def _within(need: Need, room: Room, slots: int) -> bool:
    """Room for one job more among `slots` jobs (and as many CPUs, memory in proportion)."""
    if room.jobs == 0:
        return True  # as on the local backend, a job alone may exceed the worker
    if room.jobs >= slots or (need.cpus and room.cpus_used + need.cpus > slots):
        return False
    scale = slots / room.cpus
    return not (room.memory and need.memory and room.memory_used + need.memory > room.memory * scale)


def fits(need: Need, room: Room, now: float) -> bool:
    """May this worker hold the job (running now, or prefetched up to `cap`)? As on the local
    backend, a job takes a slot (a worker runs at most `cpus` jobs at once) and its declared
    CPUs and memory; never a job whose declared walltime outlasts its allocation."""
    return in_time(need, room, now) and _within(need, room, cap(room))


def runs_now(need: Need, room: Room, now: float) -> bool:
    """Would the worker start the job at once (a free slot, its CPUs and memory free)?"""
    return in_time(need, room, now) and _within(need, room, room.cpus)


def taken(room: Room, need: Need, kept: bool = False) -> Room:
    """The room once it holds one job more (`kept`: a slot kept for a job on its way)."""
    return Room(
        room.cpus,
        room.memory,
        room.ends_at,
        room.jobs + 1,
        room.cpus_used + need.cpus,
        room.memory_used + need.memory,
        room.kept + kept,
        room.stuck,
    )


def place(jobs: Iterable[tuple[int, Need]], rooms: Mapping[str, Room], now: float) -> dict[int, str]:
    """Which worker takes each waiting job, in order: job -> worker (a job not in the answer
    keeps waiting in the launcher).

    A job goes to a worker where it starts at once when there is one (the one with the most
    free slots: work spreads over idle workers rather than queueing behind a busy one's); only
    when none has a free slot is it prefetched, to the worker holding the fewest beyond its
    slots. `jobs` is read lazily, and no further once every worker is full."""
    left = dict(rooms)
    out: dict[int, str] = {}
    it = iter(jobs)
    while left and not all(r.jobs >= cap(r) for r in left.values()):
        item = next(it, None)
        if item is None:
            break
        job, need = item
        now_ok = [name for name, r in left.items() if runs_now(need, r, now)]
        if now_ok:
            pick = max(now_ok, key=lambda n: left[n].cpus - left[n].jobs)
        else:
            later = [name for name, r in left.items() if fits(need, r, now)]
            if not later:
                continue
            pick = min(later, key=lambda n: left[n].jobs - left[n].cpus)
        left[pick] = taken(left[pick], need)
        out[job] = pick
    return out


Age = tuple[float, int]  # when a job entered the launcher's queue (SUBMITTED), then its number


def _has_free_slot(room: Room, now: float) -> bool:
    return room.jobs < room.cpus and runs_now(Need(), room, now)


def _good(room: Room, now: float) -> bool:
    """A job placed there starts at once, or soon: a free slot, or a prefetch behind short jobs."""
    return _has_free_slot(room, now) or (not room.stuck and fits(Need(), room, now))


def _take(need: Need, good: dict[str, Room], now: float, other_than: str = "") -> str | None:
    """Where `place` would put the job among the good places (a free slot first, the most
    free; else a prefetch, the fewest held beyond slots), and take it there."""
    names = [n for n in good if n != other_than]
    ok = [n for n in names if runs_now(need, good[n], now)]
    if ok:
        pick = max(ok, key=lambda n: good[n].cpus - good[n].jobs)
    else:
        later = [n for n in names if fits(need, good[n], now)]
        if not later:
            return None
        pick = min(later, key=lambda n: good[n].jobs - good[n].cpus)
    good[pick] = taken(good[pick], need)
    if not _good(good[pick], now):
        del good[pick]
    return pick


def withdrawals(
    queued: Mapping[str, Sequence[tuple[Age, int, Need]]],
    rooms: Mapping[str, Room],
    waiting: Iterable[tuple[Age, Need]],
    now: float,
) -> list[tuple[str, int, str]]:
    """Jobs to ask back from stuck workers for good places elsewhere: (from worker, job, to).

    Good places (a free slot, or a prefetch on a worker that is not stuck: the job starts at
    once or within a moment) go to the oldest jobs first, wherever they wait: `waiting` (the
    launcher's queue, in the order `place` hands it out) or `queued` (per worker, its
    prefetched jobs: held there, not started; oldest first). A job prefetched by a stuck worker
    with no free slot (behind long jobs) that is older than the launcher's next waiting job is
    asked back for a good place elsewhere, which the launcher keeps for it until the answer.
    The worker gives back only what has not started there (never a job run twice). `waiting`
    is read lazily, no further than the good places go."""
    good = {name: r for name, r in rooms.items() if _good(r, now)}
    candidates = sorted(
        (age, name, job, need)
        for name, jobs in queued.items()
        if name in rooms and rooms[name].stuck and not _has_free_slot(rooms[name], now)
        for age, job, need in jobs
    )
    out: list[tuple[str, int, str]] = []
    if not good or not candidates:
        return out
    ahead = iter(waiting)
    head = next(ahead, None)
    for age, name, job, need in candidates:
        while good and head is not None and head[0] < age:
            _take(head[1], good, now)  # an older job from the launcher's queue comes first
            head = next(ahead, None)
        if not good:
            break
        to = _take(need, good, now, other_than=name)
        if to is not None:
            out.append((name, job, to))
    return out


def unfit_reason(need: Need, cpus: int, memory: int, time: float) -> str | None:
    """Why no worker of this shape could ever run the job (None: one could)."""
    if need.cpus > cpus:
        return f"declares {need.cpus:g} CPUs, a pilot worker has {cpus} (slurm.pilot.cpus)"
    if memory and need.memory > memory:
        return f"declares {need.memory} bytes of memory, a pilot worker has {memory} (slurm.pilot.memory)"
    if need.walltime is not None and need.walltime + WALLTIME_MARGIN > time:
        return (
            f"declares a walltime of {need.walltime:g} s, a pilot worker lives {time:g} s (slurm.pilot.time)"
        )
    return None


def wanted_workers(waiting: int, starting: int, alive: int, cpus: int, step: int, limit: int) -> int:
    """Worker jobs to submit now: while jobs wait that no worker took, start up to `step` at a
    time (enough for the waiting jobs at `cpus` each), as long as none is still starting
    (queued in Slurm or not connected yet) and fewer than `limit` are alive."""
    if waiting <= 0 or starting > 0 or alive >= limit:
        return 0
    enough = -(-waiting // max(1, cpus))
    return max(0, min(step, limit - alive, enough))


def should_stop(jobs: int, idle_since: float | None, now: float, idle_timeout: float, waiting: int) -> bool:
    """An idle worker leaves after idle_timeout, unless jobs wait that it could take."""
    return jobs == 0 and waiting == 0 and idle_since is not None and now - idle_since >= idle_timeout


REPORTED = {"SUCCESS": TaskState.SUCCESS, "FAILED": TaskState.FAILED, "KILLED": TaskState.KILLED}


def reported_end(state: TaskState, kill_asked: bool) -> tuple[TaskState, str]:
    """A worker reports a job's end. KILLED that nobody asked for is the worker going away
    (its Slurm job cancelled or timed out: it killed its runs on the way out): LOST, retried
    per policy, not the user's kill."""
    if state is TaskState.KILLED and not kill_asked:
        return TaskState.LOST, "its pilot worker stopped (Slurm ended the worker's job)"
    return state, ""
