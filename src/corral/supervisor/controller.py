"""Control requests in, records and answers out.

Every request is decoded into a typed struct (protocol.py) before anything looks at it; a TCP
client must carry the task's token. A request that changes state becomes a record, which the
engine encodes, size-checks and hands to the journal writer before folding it; the answer
waits for the commit that makes it durable. Every error becomes an answer: no request can end
the supervisor.
"""

from __future__ import annotations

import hmac
import logging
import os
from typing import TYPE_CHECKING, Any

from corral.core.records import Action, JobsAdded, Request, encode
from corral.core.states import Halted
from corral.journal import MAX_FRAME
from corral.supervisor.control import Client, ControlServer
from corral.supervisor.protocol import (
    BadRequest,
    Calls,
    ControlRequest,
    Heartbeat,
    Jobs,
    Kill,
    Lose,
    Pause,
    PilotHello,
    Ping,
    Requeue,
    Resume,
    Status,
    Submit,
    Watch,
    Yield,
    decode_request,
)

if TYPE_CHECKING:
    from corral.supervisor.engine import Engine

log = logging.getLogger("corral.supervisor")


class Refused(Exception):
    """A well-formed request that cannot be carried out now; the message is the answer."""


class Controller:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.server: ControlServer | None = None  # set while the loop runs
        self.token: str | None = None  # required from TCP clients

    def handle(self, client: Client, data: bytes) -> None:
        try:
            request = decode_request(data)
        except BadRequest as exc:
            self._answer(client, {"ok": False, "error": f"bad request: {exc}"})
            return
        if client.tcp and not self._token_ok(request.token):
            log.warning(
                "control: refused a %s request from %s: wrong or missing token", _op(request), client.peer
            )
            self._answer(client, {"ok": False, "error": "wrong or missing token"})
            return
        try:
            self._dispatch(client, request)
        except Refused as exc:
            self._answer(client, {"ok": False, "error": str(exc)})
        except Exception as exc:  # a bug of ours: answer, keep supervising, keep the traceback
            log.exception("control: %s request failed", _op(request))
            self._answer(client, {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"})

    def _token_ok(self, given: str | None) -> bool:
        if not self.token or given is None:
            return False
        return hmac.compare_digest(given.encode(), self.token.encode())  # constant time

    def _answer(self, client: Client, message: dict[str, Any]) -> None:
        if self.server is not None:
            self.server.answer(client, message)

    def _dispatch(self, client: Client, request: ControlRequest) -> None:
        engine, sup = self.engine, self.engine.sup
        if isinstance(request, Ping | Status):
            answer: dict[str, Any] = {"ok": True, "pid": os.getpid(), "state": sup.state.value}
            if isinstance(request, Status):
                answer["counts"] = {s.value: n for s, n in sup.counts.items() if n}
            if engine.committer.problem is not None:
                answer["journal"] = engine.committer.problem
                answer["journal_since"] = engine.committer.since
            self._answer(client, answer)
        elif isinstance(request, Jobs):
            self._answer(client, self._jobs(request.jobs))
        elif isinstance(request, Heartbeat):  # kept in memory only: no record, no commit
            sup.beat(request.job, engine.clock())
            self._answer(client, {"ok": True})
        elif engine.committer.problem is not None:
            raise Refused(
                f"the supervisor cannot write its journal ({engine.committer.problem}); "
                "try again when there is room"
            )
        elif type(request) in engine.ops:  # an extension's request (an executor's calls)
            engine.ops[type(request)](client, request)
        elif isinstance(request, Calls | Watch | Yield | Requeue):
            raise Refused(f"{_op(request)}: this task is not an executor")
        elif isinstance(request, PilotHello):
            raise Refused("pilot: this task does not run pilot workers")
        elif isinstance(request, Kill | Pause | Resume):
            self._act(request)
            engine.answer_after_commit(client, {"ok": True})
        elif isinstance(request, Lose):
            engine.lose(engine.clock())
            engine.answer_after_commit(client, {"ok": True})
        elif isinstance(request, Submit):
            first, count = self._submit(request)
            engine.answer_after_commit(
                client,
                {"ok": True, "first": first, "count": count, "jobs": list(range(first, first + count))},
            )

    def _jobs(self, jobs: list[int]) -> dict[str, Any]:
        sup = self.engine.sup
        retrying = sup.retry_set()
        states = [sup.job_state(j).value if j < sup.total else None for j in jobs]
        return {
            "ok": True,
            "states": states,
            "retrying": [j in retrying for j in jobs],
            "terminal": sup.terminal,
        }

    def _act(self, request: Kill | Pause | Resume) -> None:
        """kill, pause, resume: of the whole task, a job, or a process of a job."""
        sup = self.engine.sup
        job, process = request.job, request.process
        if job is None and process is not None and not self.engine.ensemble:
            job = 0
        if job is not None and job not in sup.live:
            raise Refused(f"job {job} is not running")
        if process is not None:
            rt = sup.jobs.get(job if job is not None else 0)
            if rt is None or process not in rt.processes:
                raise Refused(f"no process named {process!r}")
        grace = request.grace if isinstance(request, Kill) else None
        action = {Kill: Action.KILL, Pause: Action.PAUSE, Resume: Action.RESUME}[type(request)]
        self.engine.record(Request(action, self.engine.clock(), job=job, process=process, grace=grace))

    def _submit(self, request: Submit) -> tuple[int, int]:
        engine, sup = self.engine, self.engine.sup
        if not engine.ensemble:
            raise Refused("jobs can only be submitted to an ensemble")
        if sup.terminal or sup.halted is not Halted.NONE:
            raise Refused(f"the ensemble is {sup.halted.value or sup.state.value}")
        params = request.params
        if engine.check_params is not None:
            problem = engine.check_params(params)
            if problem:
                raise Refused(problem)
        first = sup.total
        record = JobsAdded(first, params, engine.clock())
        try:
            size = len(encode(record))
        except (OverflowError, TypeError) as exc:  # e.g. an integer msgpack cannot hold
            raise Refused(f"the submission cannot be recorded: {exc}") from None
        if size > MAX_FRAME:  # refused whole: nothing of it is recorded or started
            raise Refused(
                f"a submission of {len(params)} jobs takes {size} bytes in the journal, and one "
                f"record holds at most {MAX_FRAME}: submit it in parts"
            )
        engine.record(record)
        return first, len(params)


def _op(request: ControlRequest) -> str:
    return type(request).__name__.lower()
