"""The executor's side inside its supervisor: calls by identity, job ends to drivers, yields.

Installed on an Engine (supervisor/engine.py) through its extension points: control ops
(`calls`, `watch`, `yield`, `requeue`), `on_record` / `on_turn`, and `watch()` for the
drivers' connections. Everything it knows is rebuilt from the journal (the JobsAdded rows
name each job's call), except who is waiting (drivers and yielded calls reconnect).

- `calls`: rows of calls; a call whose identity has a job already gets that job (and its end,
  if final) instead of a new one; the others are journaled as new jobs (JobsAdded) and the
  answer goes out once that record is durable.
- `watch`: a driver's connection, kept open; final job ends go to every watcher as JSON lines
  after the records are durable. Its closing is noticed at once (the loop watches it).
- `yield`: a running call waits for calls of this executor: it is recorded as yielded
  (PAUSED, SIGSTOP; its slot is free) and the answer is held until they are final, when it is
  woken (SIGCONT) and answered. Waiting on itself, or in a cycle, is refused at once.
- `requeue`: start nothing more (drain) and kill the running calls; each is recorded with a
  note and journaled again as a new pending job, which the next executor of this id runs.
- retries: a call that failed with retries left is journaled again as a new job.
- the ensemble is held open while anyone may still submit; when no driver is connected and
  nothing is running or waiting, the hold is released and the ensemble ends (a new driver
  reopens it).
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from typing import Any

import msgspec

from corral.core.records import Action, JobsAdded, Note, Record, Request, Transition
from corral.core.states import ENSEMBLE, TASK_TERMINAL, Halted, TaskState
from corral.spec.model import Resources, Task
from corral.supervisor.control import Client
from corral.supervisor.engine import Engine
from corral.supervisor.protocol import Calls, Requeue, Watch, Yield

SEND_TIMEOUT = 5.0  # a watching driver that reads nothing for this long is dropped
YIELD_HOLD = 3600.0  # a yielded call's request is answered within this, or it asks again


class Book:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sup = engine.sup
        self.latest: dict[str, int] = {}  # call -> its newest job
        self.tries: dict[str, int] = {}  # call -> jobs journaled for it
        self.rows: dict[str, dict[str, Any]] = {}
        self.key_of: dict[int, str] = {}  # job -> call
        self.final: set[str] = set()  # calls whose newest job ended for good
        self.readd: list[dict[str, Any]] = []  # rows to journal again (retries, re-queued)
        self.requeued: set[int] = set()
        self.events: list[list[Any]] = []  # final ends not yet sent
        self.watchers: dict[int, socket.socket] = {}
        self.waiters: dict[int, tuple[Client, list[str], bool]] = {}  # job -> (request, calls, any)
        self.seen_driver = False
        for added in self.sup.added:
            self._added(added)
        for call, job in self.latest.items():  # ends the journal holds
            state = self.sup.job_state(job)
            if state in TASK_TERMINAL:
                if state is not TaskState.SUCCESS and self.tries[call] <= self.rows[call].get("retries", 0):
                    self.readd.append(self.rows[call])  # a retry its predecessor did not journal
                else:
                    self.final.add(call)
        for job in sorted(self.sup.live):  # yielded by a predecessor, who knew what for: wake
            rt = self.sup.jobs.get(job)
            if rt is not None and rt.paused and job in self.key_of:
                engine.record(Request(Action.WAKE, time.time(), job=job))
        base_for = self.sup.task_for
        base_shape = self.sup.fold_task or base_for  # captured: task_shape would call back here
        self.sup.task_for = lambda job: self._task(base_for(job), job)
        self.sup.fold_task = lambda job: self._task(base_shape(job), job)  # timeouts decide
        self.sup.hold = True
        chained = engine.on_record
        if chained is not None:

            def both(rec: Record) -> None:
                chained(rec)
                self.record(rec)

            engine.on_record = both
        else:
            engine.on_record = self.record
        engine.on_turn = self.turn
        engine.ops.update({Calls: self.op_calls, Watch: self.op_watch, Yield: self.op_yield})
        engine.ops[Requeue] = self.op_requeue
        if self.sup.terminal or self.sup.halted is not Halted.NONE:
            engine.record(Request(Action.REOPEN, time.time()))

    # -- the fold -------------------------------------------------------------------------------

    def _added(self, rec: JobsAdded) -> None:
        for i, row in enumerate(rec.params):
            call = row["call"]
            job = rec.first + i
            self.key_of[job] = call
            self.latest[call] = job
            self.tries[call] = self.tries.get(call, 0) + 1
            self.rows[call] = row
            self.final.discard(call)

    def _task(self, task: Task, job: int) -> Task:
        """The job's task with its call's own timeout and resources."""
        call = self.key_of.get(job)
        row = self.rows.get(call) if call is not None else None
        if not row or not (row.get("timeout") or row.get("cpus") or row.get("memory")):
            return task
        procs = tuple(
            msgspec.structs.replace(p, timeout=row.get("timeout") or p.timeout) for p in task.processes
        )
        res = Resources(cpus=row.get("cpus", 0.0), memory=row.get("memory", 0))
        return msgspec.structs.replace(task, processes=procs, resources=res)

    def record(self, rec: Record) -> None:
        if isinstance(rec, JobsAdded):
            self._added(rec)
        elif isinstance(rec, Transition) and rec.job != ENSEMBLE and rec.state in _TERMINAL:
            self._ended(rec)

    def _ended(self, rec: Transition) -> None:
        job = rec.job
        waiter = self.waiters.pop(job, None)
        if waiter is not None:
            self.engine.answer_after_commit(waiter[0], {"ok": False, "error": "the waiting call ended"})
        call = self.key_of.get(job)
        if call is None or self.latest.get(call) != job:
            return
        row = self.rows[call]
        if job in self.requeued:
            self.requeued.discard(job)
            self.readd.append(row)
            return
        if (
            rec.state != TaskState.SUCCESS
            and self.tries[call] <= row.get("retries", 0)
            and self.sup.halted is Halted.NONE
        ):
            self.readd.append(row)
            return
        self.final.add(call)
        code = self.sup.summary(job).exit_code
        self.events.append([call, job, rec.state, code, rec.reason])

    # -- each turn ------------------------------------------------------------------------------

    def turn(self, sup: Any) -> None:
        now = time.time()
        if self.readd:
            rows, self.readd = self.readd, []
            self.engine.record(JobsAdded(self.sup.total, rows, now))
            self.sup.dirty.add(ENSEMBLE)
        if self.events and not self.engine.writer.pending:
            events, self.events = self.events, []
            line = json.dumps({"ends": events}).encode() + b"\n"
            for fd, conn in list(self.watchers.items()):
                try:
                    conn.sendall(line)
                except OSError:
                    self._drop(fd)
        for job, (waiting, calls, first) in list(self.waiters.items()):
            if self._over(calls, first):
                del self.waiters[job]
                self.engine.record(Request(Action.WAKE, now, job=job))
                self.engine.answer_after_commit(waiting, {"ok": True})
                self.sup.dirty.add(job)
        self._maybe_end()

    def _over(self, calls: list[str], first: bool) -> bool:
        """Whether a wait for `calls` is over: all final, or (first) one of them."""
        return (any if first else all)(c in self.final for c in calls)

    def _maybe_end(self) -> None:
        sup = self.sup
        if not sup.hold or self.watchers or not self.seen_driver or sup.live or self.waiters or self.readd:
            return
        if sup.halted is not Halted.NONE or (sup.next_new >= sup.total and not sup.retry_due):
            sup.hold = False  # nobody can add calls now: end (a new driver reopens)
            sup.dirty.add(ENSEMBLE)

    # -- control ops ----------------------------------------------------------------------------

    def _reopen(self, now: float) -> None:
        self.sup.hold = True
        if self.sup.terminal or self.sup.halted is not Halted.NONE:
            self.engine.record(Request(Action.REOPEN, now))

    def op_calls(self, client: Client, request: Calls) -> None:
        now = time.time()
        self._reopen(now)
        answers: list[list[Any]] = []
        new: list[dict[str, Any]] = []
        fresh: dict[str, int] = {}
        first = self.sup.total
        for row in request.rows:
            call = row.call
            job = self.latest.get(call)
            if job is None:
                job = fresh.get(call)
                if job is None:
                    job = fresh[call] = first + len(new)
                    new.append(msgspec.to_builtins(row))
                answers.append([job])
            elif call in self.final:
                answers.append([job, self.sup.job_state(job).value, self.sup.summary(job).exit_code])
            else:
                answers.append([job])
        if new:
            self.engine.record(JobsAdded(first, new, now))
        self.sup.dirty.add(ENSEMBLE)
        self.engine.answer_after_commit(client, {"ok": True, "calls": answers})

    def op_watch(self, client: Client, request: Watch) -> None:
        server = self.engine.controller.server
        conn = server.release(client) if server is not None else None
        if conn is None:
            return
        self.seen_driver = True
        conn.settimeout(SEND_TIMEOUT)
        try:
            conn.sendall(b'{"ok": true}\n')
        except OSError:
            conn.close()
            return
        fd = conn.fileno()
        self.watchers[fd] = conn
        self.engine.watch(fd, lambda: self._readable(fd))

    def _readable(self, fd: int) -> None:
        conn = self.watchers.get(fd)
        if conn is None:
            return
        try:
            conn.setblocking(False)
            data = conn.recv(4096)
            conn.settimeout(SEND_TIMEOUT)
        except BlockingIOError:
            conn.settimeout(SEND_TIMEOUT)
            return
        except OSError:
            data = b""
        if not data:  # the driver is gone (or closed its end): stop telling it
            self._drop(fd)

    def _drop(self, fd: int) -> None:
        conn = self.watchers.pop(fd, None)
        self.engine.watch(fd, None)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()
        self.sup.dirty.add(ENSEMBLE)  # perhaps nobody is left: the next turn looks

    def op_yield(self, client: Client, ask: Yield) -> None:
        answer = self.engine.answer_after_commit
        job = ask.job
        if job not in self.sup.live:
            answer(client, {"ok": False, "error": f"job {job} is not a running call"})
            return
        unknown = [c for c in ask.calls if c not in self.latest]
        if unknown:
            answer(client, {"ok": False, "error": f"call {unknown[0]} was never submitted"})
            return
        if job in self.waiters:  # its earlier request timed out: this one replaces it
            self.waiters[job] = (client, ask.calls, ask.any)
        else:
            cycle = self._cycle(job, ask.calls)
            if cycle:
                answer(client, {"ok": False, "deadlock": True, "error": cycle})
                return
            if self._over(ask.calls, ask.any):
                answer(client, {"ok": True})
                return
            self.waiters[job] = (client, ask.calls, ask.any)
            self.engine.record(Request(Action.YIELD, time.time(), job=job))
            self.sup.dirty.add(job)
        server = self.engine.controller.server
        if server is not None:  # held until the calls end (the answer is the wake-up)
            server.release(client, deadline=time.monotonic() + YIELD_HOLD)

    def _cycle(self, job: int, calls: list[str]) -> str:
        """A wait that can never end: on the waiting call itself, or through other waiters."""
        me = self.key_of.get(job)
        seen: set[str] = set()
        todo = list(calls)
        while todo:
            call = todo.pop()
            if call in seen or call in self.final:
                continue
            seen.add(call)
            if call == me:
                whom = "itself" if call in calls else "a call that waits for it"
                return f"call {self.rows[call].get('fn') or call} waits for {whom}"
            other = self.latest.get(call)
            # a call that waits for any one of several may be woken by another: not followed
            if other is not None and other in self.waiters and not self.waiters[other][2]:
                todo.extend(self.waiters[other][1])
        return ""

    def op_requeue(self, client: Client, request: Requeue) -> None:
        now = time.time()
        self.engine.record(Request(Action.DRAIN, now))
        for job in sorted(self.sup.live):
            call = self.key_of.get(job)
            if call is None:
                continue
            self.requeued.add(job)
            self.waiters.pop(job, None)
            self.engine.record(
                Note(f"job {job} re-queued (its executor shut down): the next executor runs it", now)
            )
            self.engine.record(Request(Action.KILL, now, job=job))
        self.engine.answer_after_commit(client, {"ok": True, "requeued": len(self.requeued)})


_TERMINAL = {s.value for s in TASK_TERMINAL}
