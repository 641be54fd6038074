"""The control protocol's requests, as typed structs with ranges: decoded before anyone acts.

A request is one JSON object on one line, tagged by "op". Whatever does not decode into one of
these structs (a wrong type, a number out of range, an unknown op or field, a string too long)
is refused with the decoder's message naming the field; nothing downstream sees raw JSON.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

MAX_JOB = 2**31 - 1  # job numbers are array indexes in core; far more than any ensemble holds
MAX_GRACE = 7 * 24 * 3600.0  # a week: finite, so that deadlines stay finite
MAX_NAME = 256  # a process name
MAX_TOKEN = 256
MAX_SUBMIT_JOBS = 100_000  # jobs in one submission (its answer lists their numbers)

Job = Annotated[int, msgspec.Meta(ge=0, le=MAX_JOB)]
Grace = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_GRACE)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
Token = Annotated[str, msgspec.Meta(max_length=MAX_TOKEN)]
Params = Annotated[list[dict[str, Any]], msgspec.Meta(min_length=1, max_length=MAX_SUBMIT_JOBS)]


class _Base(msgspec.Struct, tag_field="op", forbid_unknown_fields=True, kw_only=True):
    token: Token | None = None  # the task's secret: required on TCP, ignored on the unix socket


class Ping(_Base, tag="ping"):
    pass


class Status(_Base, tag="status"):
    pass


class Kill(_Base, tag="kill"):
    job: Job | None = None  # None: the whole task or ensemble
    process: Name | None = None
    grace: Grace | None = None


class Pause(_Base, tag="pause"):
    job: Job | None = None
    process: Name | None = None


class Resume(_Base, tag="resume"):
    job: Job | None = None
    process: Name | None = None


class Lose(_Base, tag="lose"):
    pass


class Heartbeat(_Base, tag="heartbeat"):
    job: Job = 0


class Submit(_Base, tag="submit"):
    params: Params


# -- an executor's ensemble (corral/executor/book.py) ------------------------------------------

CallHash = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{32}$")]


class CallRow(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One call as journaled (the params of its job)."""

    call: CallHash
    fn: Annotated[str, msgspec.Meta(max_length=500)] = ""
    retries: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 0
    timeout: Annotated[float, msgspec.Meta(gt=0, le=MAX_GRACE * 52)] | None = None
    cpus: Annotated[float, msgspec.Meta(ge=0, le=1e6)] = 0.0
    memory: Annotated[int, msgspec.Meta(ge=0, le=2**62)] = 0


class Calls(_Base, tag="calls"):
    """Journal these calls (those not known by their identity yet)."""

    rows: Annotated[list[CallRow], msgspec.Meta(min_length=1, max_length=MAX_SUBMIT_JOBS)]


class Watch(_Base, tag="watch"):
    """Keep the connection: final call ends come on it, one JSON line per turn."""


class Yield(_Base, tag="yield"):
    """A running call waits for these calls: pause it (its slot is free) until they end
    (with `any`: until one of them ends, as concurrent.futures.wait(FIRST_COMPLETED) and
    as_completed wait)."""

    job: Job
    calls: Annotated[list[CallHash], msgspec.Meta(min_length=1, max_length=MAX_SUBMIT_JOBS)]
    any: bool = False


class Requeue(_Base, tag="requeue"):
    """Start nothing more; kill the running calls and journal them again as pending."""


class Jobs(_Base, tag="jobs"):
    """The states of some jobs (`corral wait` over TCP, where the journal is not at hand)."""

    jobs: Annotated[list[Job], msgspec.Meta(min_length=1, max_length=MAX_SUBMIT_JOBS)]


# -- a pilot worker (corral/backends/pilot.py) --------------------------------------------------

WorkerName = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,20}_[0-9]{1,10}$")]  # SLURMID_INDEX


class PilotHello(_Base, tag="pilot"):
    """A pilot worker connects: its connection becomes the stream of its jobs (pilot_wire)."""

    worker: WorkerName
    host: Annotated[str, msgspec.Meta(max_length=MAX_NAME)]
    pid: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
    cpus: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    memory: Annotated[int, msgspec.Meta(ge=0, le=2**62)]
    ends_at: Annotated[float, msgspec.Meta(ge=0.0, le=1e11)]
    session: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{1,64}$")]
    # the jobs it holds (running, queued there, or ended and not yet acknowledged): [job, attempt]
    known: Annotated[
        list[tuple[Job, Annotated[int, msgspec.Meta(ge=0, le=65535)]]],
        msgspec.Meta(max_length=MAX_SUBMIT_JOBS),
    ] = []


ControlRequest = (
    Ping
    | Status
    | Kill
    | Pause
    | Resume
    | Lose
    | Heartbeat
    | Submit
    | Jobs
    | Calls
    | Watch
    | Yield
    | Requeue
    | PilotHello
)

_decoder = msgspec.json.Decoder(ControlRequest)


class BadRequest(ValueError):
    """A request that does not decode; the message says which field and why."""


def decode_request(data: bytes) -> ControlRequest:
    try:
        request: ControlRequest = _decoder.decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:  # ValidationError is a DecodeError
        raise BadRequest(str(exc)) from None
    return request
