"""Pilot workers: an ensemble's jobs run on a few long Slurm jobs that take them over TCP.

The launcher (our engine, `Supervision.remote`) admits jobs as SUBMITTED; this backend queues
them, submits worker jobs (one sbatch array at a time, `corral worker` on each node) while jobs
wait, and hands each job to a connected worker with room for it. The journal is the truth:
a job handed over is recorded (Submitted, id `pilot:WORKER`) and committed before its Run
message is sent; a worker's reports (start, end) become Transitions, acknowledged once durable.
A worker that goes away (Slurm says its job ended, or it fell silent and our scancel ended it)
leaves its unfinished jobs LOST, and core retries them per policy. What each observation means
is core's (core/pilot.py); this module observes, records and sends.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from corral.backends.pilot_hand import Hand
from corral.backends.pilot_ledger import LEDGER
from corral.backends.pilot_links import PREFIX, Links
from corral.backends.pilot_peer import Peer, write_status
from corral.backends.pilot_sink import OutputSink
from corral.backends.pilot_slurm import WorkerJobs, left_every, pilot_dir
from corral.backends.pilot_wire import Kill, Stop
from corral.backends.slurm_client import SlurmClient
from corral.backends.slurm_errors import SlurmError
from corral.backends.slurm_layout import one_line
from corral.core import pilot as policy
from corral.core.outcome import Seen
from corral.core.records import Note, Transition
from corral.core.states import TaskState
from corral.errors import UserError
from corral.spec.model import Pilot, Slurm, Task
from corral.supervisor.backend import Backend
from corral.supervisor.protocol import PilotHello

if TYPE_CHECKING:
    from corral.supervisor.engine import Engine

STATUS_EVERY = 1.0  # seconds between two writes of pilot/workers.json

__all__ = ["PREFIX", "PilotBackend", "pilot_dir"]


@dataclass
class PilotBackend(Backend):
    root: Path
    task_id: str
    slurm: Slurm
    pilot: Pilot
    engine: Engine | None = None
    client: SlurmClient = field(default_factory=SlurmClient)
    peers: dict[str, Peer] = field(default_factory=dict)  # worker name -> peer
    waiting: deque[int] = field(default_factory=deque)  # SUBMITTED, on no worker yet
    next_poll: float = 0.0
    found: bool = True  # False after a recovery: the first poll looks for workers by name
    status_at: float = 0.0
    left_at: float = 0.0
    left_every: float = field(default_factory=left_every)  # seconds between two asks of time left
    closed: bool = False
    slurm_jobs: WorkerJobs = field(init=False)
    links: Links | None = None
    hand: Hand = field(init=False)

    def __post_init__(self) -> None:
        self.slurm_jobs = WorkerJobs(self.root, self.task_id, self.slurm, self.pilot, self.client)
        self.hand = Hand(self._engine, self.peers, self.waiting, self._links)

    @property
    def max_workers(self) -> int:
        return self.pilot.max_workers or self.pilot.workers

    def attach(self, engine: Engine) -> None:
        self.engine = engine
        hand = self.hand
        self.links = Links(
            engine, self.peers, hand.run_message, self._room_changed, self._refused, hand.returned
        )
        if self.pilot.stream_logs:
            self.links.sink = OutputSink(self.root / self.task_id)
        engine.ops[PilotHello] = self.links.hello

    def _engine(self) -> Engine:
        assert self.engine is not None, "the backend is not attached to an engine"
        return self.engine

    def _links(self) -> Links:
        assert self.links is not None, "the backend is not attached to an engine"
        return self.links

    def _refused(self) -> str | None:
        return "the ensemble has ended" if self.closed else None

    def _room_changed(self, now: float) -> None:
        self.hand.place(now)
        self._write_status(now)

    # -- before anything is recorded ----------------------------------------------------------

    def check(self, task: Task, where: str | None = None) -> None:
        prefix = f"{where}: slurm" if where else "slurm"
        reason = policy.unfit_reason(
            policy.need_of(task), self.pilot.cpus, self.pilot.memory, self.pilot.time
        )
        if reason is not None:
            raise UserError(f"{prefix}.pilot: a job {reason}")
        self.slurm_jobs.check(prefix)

    # -- the Backend protocol -----------------------------------------------------------------

    @property
    def submits_in_commit(self) -> bool:
        return True  # submit records Submitted; the Run messages go out after the commit

    def submit(self, jobs: list[int]) -> None:
        """Jobs core admitted: queue them for a worker (one that can never take a job fails it)."""
        engine = self._engine()
        sup, now = engine.sup, time.time()
        for job in jobs:
            rt = sup.jobs.get(job)
            if rt is None or rt.state is not TaskState.SUBMITTED:
                continue
            reason = policy.unfit_reason(
                policy.need_of(rt.spec), self.pilot.cpus, self.pilot.memory, self.pilot.time
            )
            if reason is not None:
                engine.record(Transition(job, TaskState.FAILED.value, now, reason, rt.attempt))
                continue
            self.waiting.append(job)
        self.hand.place(now)
        self._grow(now)
        if self.next_poll == 0.0:
            self.next_poll = now + self.slurm.poll_interval

    def due(self) -> float | None:
        self._links().flush_all()
        if self.closed:
            return None
        if not self._engine().sup.live and not self.peers:
            return None
        return self.next_poll or time.time()

    def poll(self, now: float) -> None:
        if now < self.next_poll or self.closed:
            return
        self.next_poll = now + self.slurm.poll_interval
        if not self.found:
            self._find_workers(now)
        self._observe(now)
        self._judge(now)
        self._stop_idle(now)
        self.hand.place(now)
        self._grow(now)
        self._write_status(now)

    def cancel(self, jobs: list[int]) -> None:
        """A recorded kill: jobs on no worker end KILLED now; the others' workers are told."""
        engine = self._engine()
        sup, now = engine.sup, time.time()
        targets = set(jobs)
        for job in [j for j in self.waiting if j in targets]:
            self.waiting.remove(job)
            rt = sup.jobs.get(job)
            if rt is not None and not rt.terminal:
                engine.record(
                    Transition(
                        job, TaskState.KILLED.value, now, "killed before it reached a worker", rt.attempt
                    )
                )
        for peer in self.peers.values():
            for job, (attempt, _) in peer.jobs.items():
                if job in targets:
                    rt = sup.jobs.get(job)
                    grace = rt.kill_grace if rt is not None else None
                    peer.queue(Kill(job=job, attempt=attempt, grace=grace))
        self._links().flush_all()
        self.next_poll = now

    def reattach(self) -> int:
        """After a recovery: the jobs handed to workers wait for their worker to reconnect
        (or to be judged gone); the others wait for one. Returns how many were handed."""
        sup = self._engine().sup
        self.found = False
        handed = 0
        now = time.time()
        for job in sorted(sup.live):
            ident = sup.submitted.get(job, "")
            rt = sup.jobs[job]
            if ident.startswith(PREFIX):
                name = ident[len(PREFIX) :]
                peer = self.peers.get(name) or self._peer(name, now)
                peer.jobs[job] = (rt.attempt, policy.need_of(rt.spec))
                handed += 1
            elif rt.state is TaskState.SUBMITTED:
                self.waiting.append(job)
        self.next_poll = now
        return handed

    def close(self) -> None:
        """The ensemble ended: every worker is told to stop and cancelled."""
        if self.closed:
            return
        self.closed = True
        for peer in self.peers.values():
            peer.queue(Stop())
        self._links().flush_all()
        names = [p.name for p in self.peers.values() if p.seen not in policy.ENDED]
        self.slurm_jobs.cancel([n.split("_")[0] for n in names], everything=True)
        for peer in list(self.peers.values()):
            self._links().disconnect(peer)
        self._write_status(time.time(), force=True)

    # -- workers -----------------------------------------------------------------------------------

    def _peer(self, name: str, now: float) -> Peer:
        peer = Peer(name, now)
        self.peers[name] = peer
        return peer

    # -- workers: Slurm ---------------------------------------------------------------------------

    def _grow(self, now: float) -> None:
        """Submit worker jobs while jobs wait (core decides how many)."""
        if self.closed or self._engine().sup.kill_requested:
            return
        alive = [p for p in self.peers.values() if p.seen not in policy.ENDED and not p.cancelled]
        starting = sum(1 for p in alive if not p.connected and p.heard_at is None)
        count = policy.wanted_workers(
            len(self.waiting), starting, len(alive), self.pilot.cpus, self.pilot.workers, self.max_workers
        )
        if count <= 0:
            return
        engine = self._engine()
        try:
            names = self.slurm_jobs.submit(count)
        except SlurmError as exc:
            engine.record(Note(f"pilot: sbatch of {count} workers failed: {one_line(str(exc))}", now))
            return
        for name in names:
            self._peer(name, now)
        array = names[0].split("_")[0]
        engine.record(Note(f"pilot: {count} workers submitted as Slurm job {array}", now))

    def _find_workers(self, now: float) -> None:
        """After a recovery: our worker jobs that Slurm still holds, by job name."""
        names = self.slurm_jobs.find()
        if names is None:
            return
        self.found = True
        for name in names:
            if name not in self.peers:
                self._peer(name, now)

    def _observe(self, now: float) -> None:
        """Each worker's Slurm state (None for all: squeue failed)."""
        seen = self.slurm_jobs.observe(list(self.peers))
        for peer in self.peers.values():
            peer.seen = None if seen is None else seen.get(peer.name)
            if peer.seen is Seen.RUNNING and peer.running_since is None:
                peer.running_since = now
        if now - self.left_at >= self.left_every:
            # its allocation's end, as Slurm holds it now (a time limit can change while it runs)
            self.left_at = now
            running = [p.name for p in self.peers.values() if p.seen is Seen.RUNNING and p.connected]
            for name, left in self.slurm_jobs.time_left(running).items():
                if name in self.peers:
                    self.peers[name].ends_at = now + left

    def _judge(self, now: float) -> None:
        engine = self._engine()
        for peer in list(self.peers.values()):
            verdict = policy.judge_worker(
                policy.WorkerView(
                    peer.seen, peer.submitted_at, peer.heard_at, peer.running_since, peer.cancelled
                ),
                now,
                self.pilot.silence,
            )
            if verdict is policy.WorkerVerdict.CANCEL:
                peer.cancelled = True
                self._links().disconnect(peer)
                engine.record(
                    Note(f"pilot: worker {peer.name} silent for {self.pilot.silence:g} s: cancelled", now)
                )
                self.slurm_jobs.cancel([peer.name])
            elif verdict is policy.WorkerVerdict.GONE:
                self._gone(peer, now)

    def _gone(self, peer: Peer, now: float) -> None:
        """Its allocation ended: what it held and did not report is LOST (core retries it)."""
        engine = self._engine()
        sup = engine.sup
        self._links().disconnect(peer)
        del self.peers[peer.name]
        self._links().recover_ends(peer, pilot_dir(self.root, self.task_id) / peer.name / LEDGER, now)
        seen = peer.seen.value if peer.seen is not None else "unknown"
        for job, (attempt, _) in sorted(peer.jobs.items()):
            rt = sup.jobs.get(job)
            if rt is None or rt.terminal or rt.attempt != attempt:
                continue
            if sup.submitted.get(job) != PREFIX + peer.name:
                continue
            reason = f"its pilot worker {peer.name} is gone (Slurm: {seen})"
            engine.record(Transition(job, TaskState.LOST.value, now, reason, attempt))

    def _stop_idle(self, now: float) -> None:
        for peer in self.peers.values():
            if (
                peer.connected
                and not peer.stopping
                and policy.should_stop(
                    len(peer.jobs), peer.idle_since, now, self.pilot.idle_timeout, len(self.waiting)
                )
            ):
                peer.stopping = True
                peer.queue(Stop())

    # -- status ---------------------------------------------------------------------------------

    def _write_status(self, now: float, force: bool = False) -> None:
        """pilot/workers.json: the workers as `corral status` shows them (display only)."""
        if not force and now - self.status_at < STATUS_EVERY:
            return
        self.status_at = now
        write_status(pilot_dir(self.root, self.task_id), list(self.peers.values()), now)
