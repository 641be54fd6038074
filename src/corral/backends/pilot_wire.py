"""The pilot stream's messages: one JSON object per line, tagged by "m", typed with ranges.

After its hello (protocol.PilotHello, token checked by the controller), a worker's connection
carries these both ways. Whatever does not decode into one of these structs (wrong type, out of
range, unknown field or tag, too long, not JSON) raises WireError: the launcher drops the
connection and records nothing from it.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from corral.journal import MAX_FRAME
from corral.spec.model import Task

MAX_LINE = MAX_FRAME  # one message, at most one journal record's worth of bytes
MAX_JOB = 2**31 - 1
MAX_ATTEMPT = 65535  # core keeps attempts in an array of unsigned shorts

Job = Annotated[int, msgspec.Meta(ge=0, le=MAX_JOB)]
Attempt = Annotated[int, msgspec.Meta(ge=0, le=MAX_ATTEMPT)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
Time = Annotated[float, msgspec.Meta(ge=0.0, le=1e11)]
Grace = Annotated[float, msgspec.Meta(ge=0.0, le=7 * 24 * 3600.0)]
Code = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
Text = Annotated[str, msgspec.Meta(max_length=1000)]
EndState = Annotated[str, msgspec.Meta(pattern="^(SUCCESS|FAILED|KILLED)$")]
CHUNK = 64 * 1024  # bytes of output in one Output message at most (base64: ~87 kB on the wire)
Process = Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern="^[^\\x00/]+$")]
StreamName = Annotated[str, msgspec.Meta(pattern="^(stdout|stderr)$")]


class _Msg(msgspec.Struct, tag_field="m", forbid_unknown_fields=True, kw_only=True):
    pass


# -- launcher -> worker ----------------------------------------------------------------------


class Run(_Msg, tag="run"):
    """Run this job (its task rendered by the launcher, sandbox set)."""

    job: Job
    attempt: Attempt
    task: dict[str, Any]


class Kill(_Msg, tag="kill"):
    job: Job
    attempt: Attempt
    grace: Grace | None = None


class Ack(_Msg, tag="ack"):
    """Reports up to `seq` are durable in the launcher's journal: forget them. `output`:
    Output messages up to that number are durable in its output files (their own numbering)."""

    seq: Seq
    output: Seq | None = None


class Withdraw(_Msg, tag="withdraw"):
    """Give this job back if it has not started here (an idle worker will run it instead)."""

    job: Job
    attempt: Attempt


class Stop(_Msg, tag="stop"):
    """Take nothing more; leave once the running jobs ended."""


# -- worker -> launcher ----------------------------------------------------------------------


class Start(_Msg, tag="start"):
    seq: Seq
    job: Job
    attempt: Attempt
    at: Time


class End(_Msg, tag="end"):
    seq: Seq
    job: Job
    attempt: Attempt
    at: Time
    state: EndState
    exit_code: Code | None = None
    reason: Text = ""


class Returned(_Msg, tag="returned"):
    """Answer to a Withdraw: the job had not started here and never will (acked as a report).
    A job that had started gets no answer: its Start is on its way."""

    seq: Seq
    job: Job
    attempt: Attempt
    at: Time


class Beat(_Msg, tag="beat"):
    """Every few seconds: alive, and what runs (the launcher's status shows it)."""

    at: Time
    running: Annotated[int, msgspec.Meta(ge=0, le=MAX_JOB)] = 0
    idle_since: Time | None = None


class Output(_Msg, tag="out"):
    """Bytes of a run's stdout or stderr (stream_logs): `data` starts at `offset` of the run's
    log. Sent in order, and all of a job's output before its End; acknowledged with the reports
    (an Ack up to `seq` means these bytes are durable in the launcher's streamed-output files).
    `dropped`: bytes the worker dropped just before this chunk (its spool was full)."""

    seq: Seq
    job: Job
    attempt: Attempt
    process: Process
    run: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
    stream: StreamName
    offset: Annotated[int, msgspec.Meta(ge=0, le=2**62)]
    data: Annotated[bytes, msgspec.Meta(min_length=1, max_length=CHUNK)]  # base64 in JSON
    dropped: Annotated[int, msgspec.Meta(ge=0, le=2**62)] = 0


ToWorker = Run | Kill | Ack | Stop | Withdraw
ToLauncher = Start | End | Beat | Output | Returned

_to_worker = msgspec.json.Decoder(ToWorker)
_to_launcher = msgspec.json.Decoder(ToLauncher)
_encoder = msgspec.json.Encoder()


class WireError(ValueError):
    """A line that is not one of our messages; the message names the field and why."""


def encode(message: ToWorker | ToLauncher) -> bytes:
    return _encoder.encode(message) + b"\n"


def _decode(decoder: msgspec.json.Decoder[Any], line: bytes) -> Any:
    if len(line) > MAX_LINE:
        raise WireError(f"a message of more than {MAX_LINE} bytes")
    try:
        return decoder.decode(line)
    except (msgspec.DecodeError, RecursionError) as exc:  # ValidationError is a DecodeError
        raise WireError(str(exc)) from None


def decode_for_launcher(line: bytes) -> ToLauncher:
    message: ToLauncher = _decode(_to_launcher, line)
    return message


def decode_for_worker(line: bytes) -> ToWorker:
    message: ToWorker = _decode(_to_worker, line)
    return message


def task_of(run: Run) -> Task:
    """The job's task from a Run message (WireError if it is not a task)."""
    try:
        return msgspec.convert(run.task, Task)
    except (msgspec.ValidationError, RecursionError) as exc:
        raise WireError(f"run.task: {exc}") from None


class Lines:
    """Bytes in, complete lines out; a line longer than MAX_LINE is a WireError."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        if b"\n" not in data:
            if len(self.buffer) > MAX_LINE:
                raise WireError(f"a message of more than {MAX_LINE} bytes")
            return []
        *lines, self.buffer = self.buffer.split(b"\n")
        if len(self.buffer) > MAX_LINE:
            raise WireError(f"a message of more than {MAX_LINE} bytes")
        return [line for line in lines if line.strip()]
