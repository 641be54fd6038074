"""Handing an ensemble's jobs to pilot workers: which worker takes each waiting job, and
prefetched jobs asked back from workers running long jobs (core/pilot.py chooses: `stuck`,
`place`, `withdrawals`; this module gathers the facts, records and sends).

A job handed over is recorded (Submitted, id `pilot:WORKER`) and committed before its Run
message is sent. Good places (a free slot, a prefetch behind short jobs) go to the oldest jobs
first: a job prefetched on a stuck worker (all its slots run jobs, none started for a while),
older than the launcher's next waiting job, is asked back (Withdraw) and the place it is meant
for is kept for it until the worker answers (Returned: it never started there and is handed to
that place; or its Start: it runs where it is, and the kept place is free again).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from corral.backends.pilot_links import PREFIX, Links
from corral.backends.pilot_peer import Peer
from corral.backends.pilot_wire import Run, Withdraw
from corral.core import pilot as policy
from corral.core.records import Submitted
from corral.core.states import TaskState

if TYPE_CHECKING:
    from corral.supervisor.engine import Engine


@dataclass
class Hand:
    """The backend's queue of waiting jobs and its workers (shared, not copied)."""

    engine: Callable[[], Engine]
    peers: dict[str, Peer]
    waiting: deque[int]  # SUBMITTED, on no worker yet
    links: Callable[[], Links]

    def ready(self) -> list[Peer]:
        return [p for p in self.peers.values() if p.connected and not p.stopping and not p.cancelled]

    def rooms(self, ready: list[Peer], now: float) -> dict[str, policy.Room]:
        """Each ready worker's room: stuck or not (core's word; with one worker nothing can
        move: not asked), and counting the slots kept for jobs being asked back for it (from a
        worker still connected: a lost Withdraw is answered by nobody)."""
        rooms = {p.name: p.room() for p in ready}
        if len(ready) > 1:
            for p in ready:
                if len(p.jobs) >= p.cpus and policy.stuck(len(p.jobs), p.cpus, self._last_start(p), now):
                    rooms[p.name] = dataclasses.replace(rooms[p.name], stuck=True)
        for peer in self.peers.values():
            if not peer.connected:
                continue
            for job, to in peer.withdrawing.items():
                held = peer.jobs.get(job)
                if held is not None and to in rooms:
                    rooms[to] = policy.taken(rooms[to], held[1], kept=True)
        return rooms

    def _last_start(self, peer: Peer) -> float | None:
        """When the worker last started one of the jobs it runs (its Start, as recorded)."""
        sup = self.engine().sup
        starts = [sup.jobs[j].phase_since for j in peer.jobs if sup.job_state(j) is TaskState.ACTIVE]
        return max(starts, default=None)

    def run_message(self, job: int) -> Run:
        engine = self.engine()
        rt = engine.sup.jobs[job]
        task = engine.sup.task_for(job)  # rendered (the fold keeps it unrendered)
        if task.sandbox is None:  # where a local run would start: ROOT/ID/jobs/JOB
            task = msgspec.structs.replace(task, sandbox=str(engine.layout.job_dir(job, True)))
        return Run(job=job, attempt=rt.attempt, task=msgspec.to_builtins(task))

    def place(self, now: float) -> None:
        """Ask back prefetched jobs older than the waiting ones (for free slots), then hand
        waiting jobs to connected workers: recorded, then sent after commit."""
        ready = self.ready()
        if not ready:
            return
        self._withdraw(ready, now)
        if not self.waiting:
            return
        sup = self.engine().sup
        read = 0  # waiting jobs core looked at (it stops once every worker is full)

        def candidates() -> Iterator[tuple[int, policy.Need]]:
            nonlocal read
            for job in self.waiting:
                read += 1
                rt = sup.jobs.get(job)
                if rt is not None and rt.state is TaskState.SUBMITTED:
                    yield job, policy.need_of(rt.spec)

        picks = policy.place(candidates(), self.rooms(ready, now), now)
        head = [self.waiting.popleft() for _ in range(read)]
        self.waiting.extendleft(
            reversed([j for j in head if j not in picks and sup.job_state(j) is TaskState.SUBMITTED])
        )
        self._give(picks, now)

    def _give(self, picks: dict[int, str], now: float) -> None:
        """Hand jobs over (job -> worker): recorded, then sent after commit."""
        engine = self.engine()
        sup = engine.sup
        given: dict[str, list[int]] = {}
        for job, name in picks.items():
            rt = sup.jobs[job]
            self.peers[name].jobs[job] = (rt.attempt, policy.need_of(rt.spec))
            self.peers[name].idle_since = None
            given.setdefault(name, []).append(job)
        for name, batch in given.items():
            engine.record(Submitted(batch, "pilot", now, [PREFIX + name] * len(batch)))
            messages = [self.run_message(job) for job in batch]
            engine.after_commit(self.links().send(self.peers[name], messages))

    def _withdraw(self, ready: list[Peer], now: float) -> None:
        """Ask stuck workers back for the prefetched jobs core picks; each keeps its place."""
        if len(ready) < 2:
            return
        rooms = self.rooms(ready, now)
        stuck = [p for p in ready if rooms[p.name].stuck and len(p.jobs) > p.cpus]
        if not stuck:
            return  # the common case, cheap: no worker holds a job behind long ones
        sup = self.engine().sup

        def age(job: int) -> policy.Age:
            return (sup.jobs[job].phase_since, job)

        queued: dict[str, list[tuple[policy.Age, int, policy.Need]]] = {}
        for peer in stuck:
            # the jobs beyond its slots are the ones waiting there (it starts them in order)
            behind = list(peer.jobs.items())[peer.cpus :]
            queued[peer.name] = [
                (age(job), job, need)
                for job, (_, need) in behind
                if job not in peer.withdrawing and sup.job_state(job) is TaskState.SUBMITTED
            ]

        def waiting() -> Iterator[tuple[policy.Age, policy.Need]]:
            for job in self.waiting:
                rt = sup.jobs.get(job)
                if rt is not None and rt.state is TaskState.SUBMITTED:
                    yield (rt.phase_since, job), policy.need_of(rt.spec)

        for name, job, to in policy.withdrawals(queued, rooms, waiting(), now):
            peer = self.peers[name]
            peer.withdrawing[job] = to
            peer.queue(Withdraw(job=job, attempt=peer.jobs[job][0]))

    def returned(self, job: int, now: float, to: str) -> None:
        """A job given back (it never started there) goes to the place kept for it, if that
        worker can still take it; else it is first in line for any worker."""
        ready = self.ready()
        need = policy.need_of(self.engine().sup.jobs[job].spec)
        if to in {p.name for p in ready} and policy.fits(need, self.rooms(ready, now)[to], now):
            self._give({job: to}, now)
        else:
            self.waiting.appendleft(job)
        self.place(now)
