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

import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from corral.backends.pilot_peer import Peer
from corral.backends.pilot_wire import Ack, Beat, End, Kill, Run, Start, Stop, WireError
from corral.backends.slurm import SEEN, _one_line
from corral.backends.slurm_client import SbatchRequest, SlurmClient, SlurmError
from corral.core import pilot as policy
from corral.core.outcome import Seen
from corral.core.records import Note, Submitted, Transition
from corral.core.states import TaskState
from corral.errors import UserError
from corral.spec.model import Pilot, Slurm, Task
from corral.supervisor.backend import Backend
from corral.supervisor.protocol import PilotHello

if TYPE_CHECKING:
    from corral.supervisor.control import Client
    from corral.supervisor.engine import Engine

log = logging.getLogger("corral.supervisor")

PREFIX = "pilot:"  # Submitted ids of jobs handed to a worker: pilot:SLURMID_INDEX
STATUS_EVERY = 1.0  # seconds between two writes of pilot/workers.json


def pilot_dir(root: Path, task_id: str) -> Path:
    return root / task_id / "pilot"


def worker_script(root: Path, task_id: str, pilot: Pilot) -> str:
    return (
        "#!/bin/sh\n"
        "# corral: a pilot worker of this ensemble (it takes jobs from the launcher over TCP)\n"
        "unset CORRAL_CRASH  # fault injection aims at the launcher, not at its workers\n"
        f'exec "{sys.executable}" -m corral --root "{root}" worker "{task_id}" '
        '"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}" '
        f"--cpus {pilot.cpus} --memory {pilot.memory} --time {pilot.time:g} "
        f"--idle-timeout {pilot.idle_timeout:g}\n"
    )


def need_of(task: Task) -> policy.Need:
    res = task.resources
    return policy.Need(res.cpus, res.memory, res.walltime)


@dataclass
class PilotBackend(Backend):
    root: Path
    task_id: str
    slurm: Slurm
    pilot: Pilot
    engine: Engine | None = None
    client: SlurmClient = field(default_factory=SlurmClient)
    peers: dict[str, Peer] = field(default_factory=dict)  # worker name -> peer
    by_fd: dict[int, Peer] = field(default_factory=dict)
    arrays: set[str] = field(default_factory=set)  # Slurm ids of our worker arrays
    waiting: deque[int] = field(default_factory=deque)  # SUBMITTED, on no worker yet
    next_poll: float = 0.0
    found: bool = True  # False after a recovery: the first poll looks for workers by name
    status_at: float = 0.0
    closed: bool = False

    @property
    def max_workers(self) -> int:
        return self.pilot.max_workers or self.pilot.workers

    def job_name(self) -> str:
        return f"corral-pilot-{self.task_id}"

    def attach(self, engine: Engine) -> None:
        self.engine = engine
        engine.ops[PilotHello] = self.op_hello

    def _engine(self) -> Engine:
        assert self.engine is not None, "the backend is not attached to an engine"
        return self.engine

    # -- before anything is recorded ----------------------------------------------------------

    def check(self, task: Task, where: str | None = None) -> None:
        prefix = f"{where}: slurm" if where else "slurm"
        reason = policy.unfit_reason(need_of(task), self.pilot.cpus, self.pilot.memory, self.pilot.time)
        if reason is not None:
            raise UserError(f"{prefix}.pilot: a job {reason}")
        try:
            self.client.command_path("sbatch")
            self.client.command_path("squeue")
            proc = self.client.sbatch_test_only(self._request(1))
        except SlurmError as exc:
            raise UserError(f"{prefix}: {_one_line(str(exc))}") from None
        if proc.returncode != 0:
            text = _one_line(proc.stderr or proc.stdout or f"exit status {proc.returncode}")
            raise UserError(f"{prefix}: sbatch refused the pilot worker job: {text}")

    def _request(self, count: int) -> SbatchRequest:
        out = pilot_dir(self.root, self.task_id)
        return SbatchRequest(
            script=worker_script(self.root, self.task_id, self.pilot),
            job_name=self.job_name(),
            array=f"0-{count - 1}",
            output=str(out / "slurm-%A_%a.out"),
            chdir=str(self.root / self.task_id),
            requeue=False,
            partition=self.slurm.partition,
            account=self.slurm.account,
            qos=self.slurm.qos,
            time_limit_seconds=self.pilot.time,
            cpus_per_task=self.pilot.cpus,
            memory_bytes=self.pilot.memory or None,
            gres=self.slurm.gres,
            extra_args=tuple(self.slurm.extra),
        )

    # -- the Backend protocol -----------------------------------------------------------------

    def submit(self, jobs: list[int]) -> None:
        """Jobs core admitted: queue them for a worker (one that can never take a job fails it)."""
        engine = self._engine()
        sup, now = engine.sup, time.time()
        for job in jobs:
            rt = sup.jobs.get(job)
            if rt is None or rt.state is not TaskState.SUBMITTED:
                continue
            reason = policy.unfit_reason(
                need_of(rt.spec), self.pilot.cpus, self.pilot.memory, self.pilot.time
            )
            if reason is not None:
                engine.record(Transition(job, TaskState.FAILED.value, now, reason, rt.attempt))
                continue
            self.waiting.append(job)
        self._place(now)
        self._grow(now)
        if self.next_poll == 0.0:
            self.next_poll = now + self.slurm.poll_interval

    def due(self) -> float | None:
        self._flush_all()
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
        self._place(now)
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
        self._flush_all()
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
                peer.jobs[job] = (rt.attempt, need_of(rt.spec))
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
        self._flush_all()
        names = [p.name for p in self.peers.values() if p.seen not in policy.ENDED]
        ids = sorted(self.arrays | {n.split("_")[0] for n in names})
        if ids:
            with contextlib.suppress(SlurmError):
                self.client.scancel(ids)
        for peer in list(self.peers.values()):
            self._disconnect(peer)
        self._write_status(time.time(), force=True)

    # -- workers: connections -------------------------------------------------------------------

    def _peer(self, name: str, now: float) -> Peer:
        peer = Peer(name, now)
        self.peers[name] = peer
        return peer

    def op_hello(self, client: Client, hello: PilotHello) -> None:
        """A worker connected (its token checked): its socket becomes its stream."""
        engine = self._engine()
        server = engine.controller.server
        if self.closed or hello.worker not in self.peers:
            # only workers we submitted (or found in Slurm by name after a recovery) take jobs
            error = "the ensemble has ended" if self.closed else f"no worker {hello.worker} here"
            if server is not None:
                server.answer(client, {"ok": False, "error": error})
            return
        conn = server.release(client) if server is not None else None
        if conn is None:
            return
        now = time.time()
        peer = self.peers[hello.worker]
        self._disconnect(peer)  # a reconnect replaces the old stream
        peer.conn, peer.heard_at = conn, now
        peer.host, peer.pid, peer.cpus, peer.memory = hello.host, hello.pid, hello.cpus, hello.memory
        peer.ends_at, peer.session = hello.ends_at, hello.session
        peer.running_since = peer.running_since or now
        if not peer.jobs and peer.idle_since is None:
            peer.idle_since = now  # a worker that gets nothing leaves after idle_timeout too
        conn.setblocking(False)
        self.by_fd[conn.fileno()] = peer
        peer.outbox += b'{"ok":true}\n'
        self._resend(peer, {(j, a) for j, a in hello.known})
        fd = conn.fileno()
        engine.watch(fd, lambda: self._readable(fd))
        if not peer.flush():
            self._disconnect(peer)
            return
        self._place(now)
        self._write_status(now)

    def _resend(self, peer: Peer, known: set[tuple[int, int]]) -> None:
        """After a (re)connect: jobs recorded as handed to it that it does not know go again
        (their Run was lost with the old stream); kills recorded meanwhile are sent."""
        sup = self._engine().sup
        for job, (attempt, _) in sorted(peer.jobs.items()):
            rt = sup.jobs.get(job)
            if rt is None or rt.terminal:
                continue
            if (job, attempt) not in known:
                if rt.state is TaskState.SUBMITTED:
                    peer.queue(self._run_message(job))
                continue  # it ran there and ended: its end report is on its way (or LOST)
            if rt.kill_requested:
                peer.queue(Kill(job=job, attempt=attempt, grace=rt.kill_grace))

    def _disconnect(self, peer: Peer) -> None:
        if peer.conn is not None:
            fd = peer.fd
            self.by_fd.pop(fd, None)
            if self.engine is not None:
                self.engine.watch(fd, None)
        peer.close()

    def _readable(self, fd: int) -> None:
        peer = self.by_fd.get(fd)
        if peer is None:
            return
        try:
            messages, open_ = peer.receive()
        except WireError as exc:
            log.warning("pilot: dropped worker %s: %s", peer.name, exc)
            self._disconnect(peer)
            return
        now = time.time()
        peer.heard_at = now
        last = -1
        for message in messages:
            if isinstance(message, Beat):
                peer.running, peer.idle_since = message.running, message.idle_since
                continue
            self._report(peer, message, now)
            last = max(last, message.seq)
        if last >= 0:
            engine = self._engine()
            engine.after_commit(lambda: self._ack(peer, last))
        if not open_:
            self._disconnect(peer)

    def _ack(self, peer: Peer, seq: int) -> None:
        if seq > peer.acked and peer.connected:
            peer.acked = seq
            peer.queue(Ack(seq=seq))
            if not peer.flush():
                self._disconnect(peer)

    def _report(self, peer: Peer, message: Start | End, now: float) -> None:
        """A worker's report -> a Transition, if it is about the job's current attempt on it."""
        engine = self._engine()
        sup, job = engine.sup, message.job
        held = peer.jobs.get(job)
        rt = sup.jobs.get(job)
        if held is None or held[0] != message.attempt or rt is None or rt.attempt != message.attempt:
            return  # not (or no longer) this worker's: a duplicate, or judged LOST before
        if rt.terminal or sup.submitted.get(job) != PREFIX + peer.name:
            return
        if isinstance(message, Start):
            if rt.state is TaskState.SUBMITTED:
                engine.record(Transition(job, TaskState.ACTIVE.value, now, "", rt.attempt))
            return
        del peer.jobs[job]
        if not peer.jobs:
            peer.idle_since = now
        state, reason = policy.reported_end(TaskState(message.state), rt.kill_requested)
        if reason:
            reason = f"{reason}: worker {peer.name}"
        engine.record(
            Transition(job, state.value, now, reason or message.reason, rt.attempt, message.exit_code)
        )

    def _flush_all(self) -> None:
        for peer in list(self.peers.values()):
            if peer.outbox and not peer.flush():
                log.warning("pilot: dropped worker %s: it does not read its stream", peer.name)
                self._disconnect(peer)

    # -- workers: placing jobs ----------------------------------------------------------------

    def _run_message(self, job: int) -> Run:
        engine = self._engine()
        rt = engine.sup.jobs[job]
        task = engine.sup.task_for(job)  # rendered (the fold keeps it unrendered)
        if task.sandbox is None:  # where a local run would start: ROOT/ID/jobs/JOB
            task = msgspec.structs.replace(task, sandbox=str(engine.layout.job_dir(job, True)))
        return Run(job=job, attempt=rt.attempt, task=msgspec.to_builtins(task))

    def _place(self, now: float) -> None:
        """Hand waiting jobs to connected workers with room: recorded, then sent after commit."""
        engine = self._engine()
        sup = engine.sup
        ready = [p for p in self.peers.values() if p.connected and not p.stopping and not p.cancelled]
        if not ready or not self.waiting:
            return
        rooms = {p.name: p.room() for p in ready}
        given: dict[str, list[int]] = {}
        kept: deque[int] = deque()
        while self.waiting:
            job = self.waiting.popleft()
            rt = sup.jobs.get(job)
            if rt is None or rt.state is not TaskState.SUBMITTED:
                continue
            need = need_of(rt.spec)
            peer = next((p for p in ready if policy.fits(need, rooms[p.name], now)), None)
            if peer is None:
                kept.append(job)
                if all(r.jobs >= r.cpus * policy.PREFETCH for r in rooms.values()):
                    break
                continue
            r = rooms[peer.name]
            rooms[peer.name] = policy.Room(
                r.cpus, r.memory, r.ends_at, r.jobs + 1, r.cpus_used + need.cpus, r.memory_used + need.memory
            )
            peer.jobs[job] = (rt.attempt, need)
            peer.idle_since = None
            given.setdefault(peer.name, []).append(job)
        kept.extend(self.waiting)
        self.waiting = kept
        for name, jobs in given.items():
            engine.record(Submitted(jobs, "pilot", now, [PREFIX + name] * len(jobs)))
            messages = [self._run_message(job) for job in jobs]
            engine.after_commit(self._sender(self.peers[name], messages))

    def _sender(self, peer: Peer, messages: list[Run]) -> Callable[[], None]:
        def send() -> None:
            for message in messages:
                peer.queue(message)
            if not peer.flush():
                self._disconnect(peer)

        return send

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
        pilot_dir(self.root, self.task_id).mkdir(parents=True, exist_ok=True)
        engine = self._engine()
        try:
            array = self.client.sbatch(self._request(count))
        except SlurmError as exc:
            engine.record(Note(f"pilot: sbatch of {count} workers failed: {_one_line(str(exc))}", now))
            return
        self.arrays.add(array)
        for index in range(count):
            self._peer(f"{array}_{index}", now)
        engine.record(Note(f"pilot: {count} workers submitted as Slurm job {array}", now))

    def _find_workers(self, now: float) -> None:
        """After a recovery: our worker jobs that Slurm still holds, by job name."""
        try:
            infos = self.client.squeue_named(self.job_name())
        except SlurmError:
            return
        self.found = True
        for info in infos.values():
            if info.array_job_id is None or info.array_task_id is None:
                continue
            self.arrays.add(info.array_job_id)
            name = f"{info.array_job_id}_{info.array_task_id}"
            if name not in self.peers and not info.terminal:
                self._peer(name, now)

    def _observe(self, now: float) -> None:
        """One squeue for every worker array: each worker's Slurm state."""
        bases = {name.split("_")[0] for name in self.peers} | self.arrays
        if not bases:
            return
        try:
            infos = self.client.squeue(bases)
        except SlurmError:
            for peer in self.peers.values():
                peer.seen = None  # unknown: silence alone decides nothing
            return
        for peer in self.peers.values():
            info = infos.get(peer.name)
            peer.seen = Seen.GONE if info is None else SEEN[info.state]
            if peer.seen is Seen.RUNNING and peer.running_since is None:
                peer.running_since = now

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
                self._disconnect(peer)
                engine.record(
                    Note(f"pilot: worker {peer.name} silent for {self.pilot.silence:g} s: cancelled", now)
                )
                with contextlib.suppress(SlurmError):
                    self.client.scancel([peer.name])
            elif verdict is policy.WorkerVerdict.GONE:
                self._gone(peer, now)

    def _gone(self, peer: Peer, now: float) -> None:
        """Its allocation ended: what it held and did not report is LOST (core retries it)."""
        engine = self._engine()
        sup = engine.sup
        self._disconnect(peer)
        del self.peers[peer.name]
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
        where = pilot_dir(self.root, self.task_id)
        with contextlib.suppress(OSError):
            where.mkdir(parents=True, exist_ok=True)
            views: list[dict[str, Any]] = [
                p.view() for p in sorted(self.peers.values(), key=lambda p: p.name)
            ]
            tmp = where / "workers.json.tmp"
            tmp.write_text(json.dumps({"at": now, "host": socket.gethostname(), "workers": views}))
            os.replace(tmp, where / "workers.json")
