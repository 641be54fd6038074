"""`corral worker`: one pilot worker, on a Slurm node, running jobs handed over by its launcher.

One process runs every job it is given: it is a local ensemble supervisor (the engine, its
reaper, core's task semantics: ordering, process retries, finals, timeouts, logs) fed over the
wire instead of from a spec. Its journal (ROOT/ID/pilot/WORKER/journal) is its ledger: each
job it took is a JobsAdded row {"job": J, "attempt": A}. It reports each job's start and end,
resends what the launcher has not acknowledged after a reconnect, and leaves when told to stop,
when idle and cut off from the launcher for idle_timeout, or when Slurm ends its allocation
(SIGTERM: it kills its runs, reports them KILLED, and the launcher judges them LOST).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from corral.backends.pilot_hello import Hello, allocation_end, say_hello
from corral.backends.pilot_ledger import LEDGER, append_ends
from corral.backends.pilot_spool import OutputSpool, scratch_dir, streamed_task
from corral.backends.pilot_wire import (
    Ack,
    Beat,
    End,
    Kill,
    Lines,
    Returned,
    Run,
    Start,
    Stop,
    ToLauncher,
    WireError,
    Withdraw,
    decode_for_worker,
    encode,
    task_of,
)
from corral.core.records import Action, JobsAdded, JournalKind, Opened, Record, Request, RunUpdate, Transition
from corral.core.states import ENSEMBLE, TASK_TERMINAL, TaskState
from corral.core.supervision import Policy, Supervision
from corral.journal import open_for_append
from corral.spec.model import Task
from corral.supervisor import access, proc, safefs
from corral.supervisor.engine import Engine
from corral.supervisor.layout import Layout

log = logging.getLogger("corral.worker")

TICK = 1.0  # seconds between two beats (and reconnect attempts)
CONNECT_TIMEOUT = 10.0


@dataclass
class WorkerShape:
    cpus: int
    memory: int
    time: float
    idle_timeout: float
    spool: int | None = None  # stream_logs: bytes of unsent output kept at most (None: logs to files)


@dataclass
class PilotWorker:
    root: Path
    task_id: str
    name: str
    shape: WorkerShape
    started: float = field(default_factory=time.time)
    session: str = field(default_factory=lambda: secrets.token_hex(8))
    conn: socket.socket | None = None
    lines: Lines = field(default_factory=Lines)
    tasks: dict[int, Task] = field(default_factory=dict)  # local job -> its task
    origin: dict[int, tuple[int, int]] = field(default_factory=dict)  # local job -> (job, attempt)
    local: dict[tuple[int, int], int] = field(default_factory=dict)  # (job, attempt) -> local job
    unacked: list[Start | End | Returned] = field(default_factory=list)  # reports not acked yet
    withdrawn: set[int] = field(default_factory=set)  # local jobs given back (never to run)
    pending: list[ToLauncher] = field(default_factory=list)  # reports not sent yet (this turn's)
    ends: list[End] = field(default_factory=list)  # this turn's ends, for the ledger (pilot_ledger)
    seq: int = 0
    idle_since: float | None = None
    cut_since: float | None = None
    stopping: bool = False
    engine: Engine | None = None
    output: OutputSpool | None = None  # stream_logs (pilot_spool.py)

    ends_at: float = 0.0  # its allocation's end (allocation_end), set by open()

    # -- setting up ---------------------------------------------------------------------------

    def open(self) -> Engine:
        self.ends_at = allocation_end(self.shape.time)
        layout = Layout(self.root / self.task_id / "pilot", self.name)
        safefs.make_task_dir(layout.dir, group=False)
        safefs.make_subdir(layout.logs, layout.dir)
        writer, _ = open_for_append(layout.journal, create=True)
        # the ledger serves this process only (what to report after a lost connection): it must
        # survive nothing but our own death, which the page cache does. A node that goes down
        # takes the worker and its runs with it, and the launcher judges those LOST from its own
        # journal, so an fdatasync per turn would buy nothing and cost ~1/4 of the worker's time.
        writer.sync = False
        sup = Supervision(
            JournalKind.ENSEMBLE,
            self.name,
            self.tasks.__getitem__,
            0,
            Policy(job_limit=self.shape.cpus, cpus=float(self.shape.cpus), memory=self.shape.memory),
            hold=True,
        )
        engine = Engine(layout, sup, writer, ensemble=True)
        opened = Opened(
            JournalKind.ENSEMBLE,
            self.name,
            {"name": "pilot-worker", "job": {"cmd": "true"}},
            time.time(),
            socket.gethostname(),
            proc.boot_id(),
            context={"pilot": self.task_id},
        )
        engine.record(opened)
        writer.commit()
        parent = Layout(self.root, self.task_id)
        engine.public = {"CORRAL_ROOT": str(self.root), "CORRAL_TASK_ID": self.task_id}
        reachable = access.published(parent)
        if reachable is not None:
            engine.public["CORRAL_CONTROL"], engine.public["CORRAL_TOKEN"] = reachable
        if self.shape.spool is not None:  # runs log to node-local scratch, shipped from there
            self.output = OutputSpool(scratch_dir(self.task_id, self.name), self.shape.spool)
            engine.env.logs_prefix = self.output.logs_prefix
        engine.on_record = self._recorded
        engine.on_turn = lambda _sup: self._flush()
        self.engine = engine
        return engine

    def run(self) -> TaskState:
        engine = self.open()
        proc.become_subreaper()
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        done = threading.Event()

        def ticker() -> None:
            while not done.wait(TICK):
                with contextlib.suppress(OSError):
                    os.write(wake_w, b".")

        thread = threading.Thread(target=ticker, daemon=True)
        thread.start()
        self.idle_since = time.time()

        def started() -> None:  # the loop runs: descriptors can be watched now
            engine.watch(wake_r, lambda: self._tick(wake_r))
            self._connect()

        engine.after_commit(started)
        try:
            state = engine.run()
        finally:
            done.set()
            self._flush(final=True)
            if self.output is not None:
                self.output.close()
            engine.writer.close()
            os.close(wake_r)
            os.close(wake_w)
        return state

    # -- the launcher's stream --------------------------------------------------------------------

    def _connect(self) -> None:
        found = access.published(Layout(self.root, self.task_id))
        if found is None:
            return
        address, token = found
        held = {key for w, key in self.origin.items() if w not in self.withdrawn}
        known = sorted(held | {(m.job, m.attempt) for m in self.unacked if not isinstance(m, Returned)})
        hello = Hello(token, self.name, self.shape.cpus, self.shape.memory, self.ends_at, self.session, known)
        connected = say_hello(address, hello, CONNECT_TIMEOUT)
        if connected is None:
            return
        conn, answer, rest = connected
        if not answer.get("ok"):
            log.warning("worker: the launcher refused us: %s", answer.get("error"))
            conn.close()
            return
        conn.setblocking(False)
        self.conn, self.lines, self.cut_since = conn, Lines(), None
        if self.engine is not None:
            fd = conn.fileno()
            self.engine.watch(fd, lambda: self._readable(fd))
        if self.output is not None:  # in order, each End after its job's output (_flush)
            self.pending = list(self.unacked)
        for message in self.unacked if self.output is None else ():  # what happened while cut off
            self._send(encode(message))
        if rest:  # the stream began in the answer's read
            self._take(rest)

    def _drop(self) -> None:
        if self.conn is not None:
            if self.engine is not None:
                self.engine.watch(self.conn.fileno(), None)
            with contextlib.suppress(OSError):
                self.conn.close()
        self.conn = None
        self.cut_since = time.time()
        if self.output is not None:
            self.output.rewind()  # what was not acked goes again on the next connection

    def _send(self, data: bytes) -> bool:
        """Send DATA; False if the connection is lost (or was)."""
        if self.conn is None:
            return False
        try:
            self.conn.settimeout(CONNECT_TIMEOUT)
            self.conn.sendall(data)
            self.conn.setblocking(False)
        except OSError:
            self._drop()
        return self.conn is not None

    def _readable(self, fd: int) -> None:
        conn = self.conn
        if conn is None or conn.fileno() != fd:
            return
        data = b""
        try:
            data = conn.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop()
            return
        self._take(data)

    def _take(self, data: bytes) -> None:
        try:
            for line in self.lines.feed(data):
                self._handle(decode_for_worker(line))
        except WireError as exc:
            log.warning("worker: garbage from the launcher (%s): reconnecting", exc)
            self._drop()

    def _handle(self, message: Run | Kill | Ack | Stop | Withdraw) -> None:
        engine = self.engine
        assert engine is not None
        now = time.time()
        if isinstance(message, Run):
            key = (message.job, message.attempt)
            if key in self.local or self.stopping:
                return  # a resend of what we hold (or we are leaving: the launcher will judge)
            task = task_of(message)
            if self.output is not None:
                task = streamed_task(task)
            first = engine.sup.total
            self.tasks[first] = task
            self.origin[first] = key
            self.local[key] = first
            engine.env.shown_jobs[first] = message.job  # a run's CORRAL_JOB is the ensemble's job
            self.idle_since = None
            engine.record(JobsAdded(first, [{"job": message.job, "attempt": message.attempt}], now))
        elif isinstance(message, Kill):
            local = self.local.get((message.job, message.attempt))
            # a job still waiting here is killed too: it ends KILLED once admitted, before running
            if local is not None and engine.sup.job_state(local) not in TASK_TERMINAL:
                engine.record(Request(Action.KILL, now, job=local, grace=message.grace))
        elif isinstance(message, Ack):
            self.unacked = [m for m in self.unacked if m.seq > message.seq]
            if self.output is not None and message.output is not None:
                self.output.acked(message.output)
        elif isinstance(message, Withdraw):
            self._withdraw(message, now)
        else:
            self._leave(now)

    def _withdraw(self, message: Withdraw, now: float) -> None:
        """Give a job back that has not started here: killed while still PENDING, it ends
        KILLED once admitted without running (reported to nobody); the launcher hears Returned.
        A job that started (or ended) is not given back."""
        engine = self.engine
        assert engine is not None
        key = (message.job, message.attempt)
        local = self.local.get(key)
        if local is None or self.stopping or engine.sup.job_state(local) is not TaskState.PENDING:
            return
        engine.record(Request(Action.KILL, now, job=local))
        self.withdrawn.add(local)
        del self.local[key]  # a later Run of it (after a launcher recovery) is a new job here
        self.seq += 1
        returned = Returned(seq=self.seq, job=message.job, attempt=message.attempt, at=now)
        self.unacked.append(returned)
        self.pending.append(returned)

    def _leave(self, now: float) -> None:
        """Take nothing more; the engine ends once the running jobs ended."""
        engine = self.engine
        assert engine is not None
        if not self.stopping:
            self.stopping = True
            engine.sup.hold = False
            engine.record(Request(Action.DRAIN, now))

    # -- reports ----------------------------------------------------------------------------------

    def _recorded(self, rec: Record) -> None:
        if type(rec) is RunUpdate and self.output is not None and self.engine is not None:
            self.output.seen(rec, self.origin.get(rec.job), self.engine.env.log_path)
        if type(rec) is not Transition or rec.job == ENSEMBLE:
            return
        key = self.origin.get(rec.job)
        if key is None:
            return
        if rec.job in self.withdrawn:  # given back: it reports nothing
            if TaskState(rec.state) in TASK_TERMINAL:
                self.withdrawn.discard(rec.job)
                self.tasks.pop(rec.job, None)
                self.origin.pop(rec.job, None)
                if self.engine is not None and not self.engine.sup.live - {rec.job}:
                    self.idle_since = rec.at
            return
        job, attempt = key
        state = TaskState(rec.state)
        self.seq += 1
        message: Start | End
        if state is TaskState.ACTIVE:
            message = Start(seq=self.seq, job=job, attempt=attempt, at=rec.at)
        elif state in TASK_TERMINAL:
            assert self.engine is not None
            code = self.engine.sup.summary(rec.job).exit_code
            end = state.value if state.value in ("SUCCESS", "FAILED", "KILLED") else "FAILED"
            message = End(
                seq=self.seq,
                job=job,
                attempt=attempt,
                at=rec.at,
                state=end,
                exit_code=code,
                reason=rec.reason[:1000],
            )
            self.ends.append(message)
            if self.output is not None:
                self.output.job_ended(job, attempt)
            self.tasks.pop(rec.job, None)
            self.origin.pop(rec.job, None)
            self.local.pop(key, None)
            if not self.engine.sup.live - {rec.job}:
                self.idle_since = rec.at
        else:
            return
        self.unacked.append(message)
        self.pending.append(message)

    def _flush(self, final: bool = False) -> None:
        if self.ends:  # on the shared FS before it is sent: read back if we are cut off and go
            append_ends(self.root / self.task_id / "pilot" / self.name / LEDGER, self.ends)
            self.ends.clear()
        if self.output is not None and self.conn is not None:  # its output, then reports
            return self.output.send(self.pending, self._send, 3 * CONNECT_TIMEOUT if final else None)
        if self.pending and self.conn is not None:
            data = b"".join(encode(m) for m in self.pending)
            self.pending.clear()
            self._send(data)
        elif self.conn is None:
            self.pending.clear()  # they wait in `unacked` for the next connection

    def _tick(self, fd: int) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(fd, 4096):
                pass
        engine = self.engine
        assert engine is not None
        now = time.time()
        if self.output is not None:
            self.output.trim()
        if self.conn is None and not self.stopping:
            self._connect()
        if self.conn is not None:
            running = len(engine.sup.live)
            self._send(encode(Beat(at=now, running=running, idle_since=self.idle_since)))
        elif (
            not engine.sup.live
            and self.cut_since is not None
            and now - self.cut_since >= self.shape.idle_timeout
            and (self.idle_since is None or now - self.idle_since >= self.shape.idle_timeout)
        ):
            self._leave(now)  # idle and cut off: the launcher is gone (our ledger stays)
