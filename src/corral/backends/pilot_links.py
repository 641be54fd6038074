"""The launcher's streams to its pilot workers: hellos, reports in, messages out.

A worker's socket is taken over from the control listener once its token was checked
(protocol.PilotHello); from then on it carries wire messages (pilot_wire.py) both ways. A
report about the job's current attempt on that worker becomes a Transition; it is acked once
the journal made it durable. Anything else (a duplicate, a job judged LOST since) is dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from corral.backends.pilot_ledger import read_ends
from corral.backends.pilot_peer import Peer
from corral.backends.pilot_sink import OutputSink
from corral.backends.pilot_wire import Ack, Beat, End, Kill, Output, Returned, Run, Start, WireError
from corral.core import pilot as policy
from corral.core.records import Note, Transition
from corral.core.states import TaskState
from corral.supervisor.protocol import PilotHello

if TYPE_CHECKING:
    from corral.supervisor.control import Client
    from corral.supervisor.engine import Engine

log = logging.getLogger("corral.supervisor")

PREFIX = "pilot:"  # Submitted ids of jobs handed to a worker: pilot:SLURMID_INDEX


@dataclass
class Links:
    """Every worker's stream. `peers` is the backend's table (shared, not copied)."""

    engine: Engine
    peers: dict[str, Peer]
    run_message: Callable[[int], Run]  # a job's Run, as recorded
    on_room: Callable[[float], None]  # a worker (re)connected, or a slot kept for a job came free
    refused: Callable[[], str | None]  # why no worker may connect now (None: they may)
    on_returned: Callable[[int, float, str], None]  # a job given back, and whose place was kept for it
    by_fd: dict[int, Peer] = field(default_factory=dict)
    sink: OutputSink | None = None  # stream_logs: the workers' output files

    def hello(self, client: Client, hello: PilotHello) -> None:
        """A worker connected (its token checked): its socket becomes its stream."""
        engine = self.engine
        server = engine.controller.server
        error = self.refused()
        if error is None and hello.worker not in self.peers:
            # only workers we submitted (or found in Slurm by name after a recovery) take jobs
            error = f"no worker {hello.worker} here"
        if error is not None:
            if server is not None:
                server.answer(client, {"ok": False, "error": error})
            return
        conn = server.release(client) if server is not None else None
        if conn is None:
            return
        now = time.time()
        peer = self.peers[hello.worker]
        self.disconnect(peer)  # a reconnect replaces the old stream
        peer.conn, peer.heard_at = conn, now
        peer.host, peer.pid, peer.cpus, peer.memory = hello.host, hello.pid, hello.cpus, hello.memory
        peer.ends_at, peer.session = hello.ends_at, hello.session
        peer.running_since = peer.running_since or now
        if not peer.jobs and peer.idle_since is None:
            peer.idle_since = now  # a worker that gets nothing leaves after idle_timeout too
        conn.setblocking(False)
        fd = conn.fileno()
        self.by_fd[fd] = peer
        peer.outbox += b'{"ok":true}\n'
        # a Returned that comes after a reconnect is not taken: the job, unknown to the worker
        # now, is sent to it again below (taking both would run it twice)
        peer.withdrawing.clear()
        self._resend(peer, {(j, a) for j, a in hello.known})
        engine.watch(fd, lambda: self.readable(fd))
        if not peer.flush():
            self.disconnect(peer)
            return
        self.on_room(now)
        if client.rest:  # a worker that did not wait for the answer: its first messages
            peer.early = client.rest
            self.readable(fd)

    def _resend(self, peer: Peer, known: set[tuple[int, int]]) -> None:
        """After a (re)connect: jobs recorded as handed to it that it does not know go again
        (their Run was lost with the old stream); kills recorded meanwhile are sent."""
        sup = self.engine.sup
        for job, (attempt, _) in sorted(peer.jobs.items()):
            rt = sup.jobs.get(job)
            if rt is None or rt.terminal:
                continue
            if (job, attempt) not in known:
                if rt.state is TaskState.SUBMITTED:
                    peer.queue(self.run_message(job))
                continue  # it ran there and ended: its end report is on its way (or LOST)
            if rt.kill_requested:
                peer.queue(Kill(job=job, attempt=attempt, grace=rt.kill_grace))

    def disconnect(self, peer: Peer) -> None:
        if peer.conn is not None:
            fd = peer.fd
            self.by_fd.pop(fd, None)
            self.engine.watch(fd, None)
        peer.close()
        if self.sink is not None:
            self.sink.close(peer.name)

    def send(self, peer: Peer, messages: list[Run]) -> Callable[[], None]:
        """What sends these messages (called once the records they follow are durable)."""

        def send() -> None:  # queued: the turn's end flushes every worker's outbox (`due`)
            for message in messages:
                peer.queue(message)

        return send

    def flush_all(self) -> None:
        for peer in list(self.peers.values()):
            if peer.outbox and not peer.flush():
                log.warning("pilot: dropped worker %s: it does not read its stream", peer.name)
                self.disconnect(peer)

    def readable(self, fd: int) -> None:
        peer = self.by_fd.get(fd)
        if peer is None:
            return
        try:
            messages, open_ = peer.receive()
        except WireError as exc:
            log.warning("pilot: dropped worker %s: %s", peer.name, exc)
            self.disconnect(peer)
            return
        now = time.time()
        peer.heard_at = now
        last = last_out = -1
        for message in messages:
            if isinstance(message, Beat):
                peer.running, peer.idle_since = message.running, message.idle_since
                continue
            if isinstance(message, Output):
                self.output(peer, message, now)
                last_out = max(last_out, message.seq)
                continue
            if isinstance(message, Returned):
                self.returned(peer, message, now)
            else:
                self.report(peer, message, now)
            last = max(last, message.seq)
        if self.sink is not None:
            self.sink.flush(peer.name)  # in the files before the journal has the job's end
        if last >= 0 or last_out >= 0:
            self.engine.after_commit(lambda: self._ack(peer, last, last_out))
        if not open_:
            self.disconnect(peer)

    def _ack(self, peer: Peer, seq: int, output: int = -1) -> None:
        """Queued: the turn's acks and runs to a worker go out in one send (`due` flushes).
        OUTPUT: Output messages up to it are taken; made durable before they are acked."""
        if not peer.connected:
            return
        if output >= 0 and self.sink is not None:
            self.sink.flush(peer.name, sync=True)  # the Ack lets the worker forget them
        if seq > peer.acked or output >= 0:
            peer.acked = max(peer.acked, seq)
            peer.queue(Ack(seq=max(peer.acked, 0), output=output if output >= 0 else None))

    def holds(self, peer: Peer, job: int, attempt: int) -> bool:
        """The job's current attempt is on this worker, and not ended."""
        sup = self.engine.sup
        held = peer.jobs.get(job)
        rt = sup.jobs.get(job)
        if held is None or held[0] != attempt or rt is None or rt.attempt != attempt:
            return False  # not (or no longer) this worker's: a duplicate, or judged LOST before
        return not rt.terminal and sup.submitted.get(job) == PREFIX + peer.name

    def output(self, peer: Peer, message: Output, now: float) -> None:
        """A chunk of a job's output (stream_logs) -> the worker's output files, if the job is
        on this worker; anything else is refused (nothing written, the stream goes on)."""
        if self.sink is None:
            return  # not asked for: not kept
        if not self.holds(peer, message.job, message.attempt):
            self.sink.refuse(peer.name, f"job {message.job} attempt {message.attempt} is not on it")
            return
        if self.sink.take(peer.name, message) and message.dropped:
            what = f"job {message.job} {message.process}[{message.run}] {message.stream}"
            self.engine.record(
                Note(f"pilot: worker {peer.name} dropped {message.dropped} bytes of {what}: spool full", now)
            )

    def returned(self, peer: Peer, message: Returned, now: float) -> None:
        """A worker gave back a job we asked back, which never started there: it waits for
        another worker (the record that hands it over is committed before it is sent)."""
        job = message.job
        if job not in peer.withdrawing or not self.holds(peer, job, message.attempt):
            return
        to = peer.withdrawing.pop(job)
        if self.engine.sup.jobs[job].state is not TaskState.SUBMITTED:
            return  # its Start came first: it runs there (the worker would not give it back)
        del peer.jobs[job]
        self.on_returned(job, now, to)

    def recover_ends(self, peer: Peer, ledger: Path, now: float) -> None:
        """A gone worker's ends it could not report (cut off): read back from its ledger, they
        end their jobs as they really ended (at their time, not after now); the rest is LOST."""
        held = {job: attempt for job, (attempt, _) in peer.jobs.items()}
        if not held:
            return
        found = read_ends(ledger, held)
        for end in found.ends:
            self.report(peer, end, min(end.at, now), "(read from its ledger)")
        if found.ends or found.garbage or found.stale:
            text = (
                f"pilot: worker {peer.name} gone: {len(found.ends)} ends read from its ledger, "
                f"{found.garbage} lines ignored as garbage, {found.stale} as ends of jobs it did not hold"
            )
            self.engine.record(Note(text, now))

    def report(self, peer: Peer, message: Start | End, now: float, note: str = "") -> None:
        """A worker's report -> a Transition at `now`, if it is about the job's current attempt
        on it (`note`: where it came from, if not the stream; display only)."""
        engine = self.engine
        sup, job = engine.sup, message.job
        held = peer.jobs.get(job)
        rt = sup.jobs.get(job)
        if held is None or held[0] != message.attempt or rt is None or rt.attempt != message.attempt:
            return  # not (or no longer) this worker's: a duplicate, or judged LOST before
        if rt.terminal or sup.submitted.get(job) != PREFIX + peer.name:
            return
        kept = peer.withdrawing.pop(job, None)  # asked back too late: it runs here
        if isinstance(message, Start):
            if rt.state is TaskState.SUBMITTED:
                engine.record(Transition(job, TaskState.ACTIVE.value, now, "", rt.attempt))
            if kept is not None:
                self.on_room(now)  # the slot kept for it elsewhere is free again
            return
        del peer.jobs[job]
        if not peer.jobs:
            peer.idle_since = now
        state, reason = policy.reported_end(TaskState(message.state), rt.kill_requested)
        if reason:
            reason = f"{reason}: worker {peer.name}"
        reason = " ".join(part for part in (reason or message.reason, note) if part)
        engine.record(Transition(job, state.value, now, reason, rt.attempt, message.exit_code))
