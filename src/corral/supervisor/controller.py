"""Control requests in, records and answers out.

A request that changes state becomes a record; its answer waits for the commit that makes the
record durable (Engine.answer_after_commit). Read-only requests are answered at once.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from corral.core.records import JobsAdded, Request
from corral.supervisor.control import reply

if TYPE_CHECKING:
    from corral.supervisor.engine import Engine


class Controller:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def handle(self, conn: Any, req: dict[str, Any]) -> None:
        op = req.get("op")
        try:
            if op == "ping":
                reply(conn, {"ok": True, "pid": os.getpid(), "state": self.engine.sup.state.value})
            elif op in ("kill", "pause", "resume"):
                self._act(conn, str(op), req)
            elif op == "lose":
                self.engine.answer_after_commit(conn, {"ok": True})
                self.engine.lose(self.engine.clock())
            elif op == "heartbeat":
                self.engine.sup.beat(int(req.get("job", 0)), self.engine.clock())
                reply(conn, {"ok": True})
            elif op == "submit":
                self._submit(conn, req)
            elif op == "status":
                sup = self.engine.sup
                counts = {s.value: n for s, n in sup.counts.items() if n}
                reply(conn, {"ok": True, "state": sup.state.value, "counts": counts})
            else:
                reply(conn, {"ok": False, "error": f"unknown op {op!r}"})
        except (TypeError, ValueError, KeyError) as exc:
            reply(conn, {"ok": False, "error": f"bad request: {exc}"})

    def _act(self, conn: Any, op: str, req: dict[str, Any]) -> None:
        """kill, pause, resume: of the whole task, a job, or a process of a job."""
        sup = self.engine.sup
        grace = req.get("grace")
        job = req.get("job")
        process = req.get("process")
        if job is None and process is not None and not self.engine.ensemble:
            job = 0
        if job is not None and (not isinstance(job, int) or job not in sup.live):
            reply(conn, {"ok": False, "error": f"job {job} is not running"})
            return
        if process is not None and process not in sup.jobs[job if job is not None else 0].processes:
            reply(conn, {"ok": False, "error": f"no process named {process!r}"})
            return
        self.engine.record(Request(op, self.engine.clock(), job=job, process=process, grace=grace))
        self.engine.answer_after_commit(conn, {"ok": True})

    def _submit(self, conn: Any, req: dict[str, Any]) -> None:
        engine, sup = self.engine, self.engine.sup
        if not engine.ensemble:
            reply(conn, {"ok": False, "error": "jobs can only be submitted to an ensemble"})
            return
        if sup.terminal or sup.halted:
            reply(conn, {"ok": False, "error": f"the ensemble is {sup.halted or sup.state.value}"})
            return
        params = req.get("params")
        if not isinstance(params, list) or not all(isinstance(p, dict) for p in params):
            reply(conn, {"ok": False, "error": "submit needs 'params': a list of objects"})
            return
        if engine.check_params is not None:
            problem = engine.check_params(params)
            if problem:
                reply(conn, {"ok": False, "error": problem})
                return
        first = sup.total
        engine.record(JobsAdded(first, params, engine.clock()))
        engine.answer_after_commit(conn, {"ok": True, "jobs": list(range(first, first + len(params)))})
