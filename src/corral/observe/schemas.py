"""Typed shapes of the API: every query and body is decoded into these (with ranges) before
anything else sees it, and the OpenAPI document is generated from them."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_JOB = 2**31 - 1
MAX_GRACE = 7 * 86400.0
MAX_SUBMIT = 100_000  # jobs in one POST; the body limit bounds it first
PROCESS_NAME = r"^[^/.\x00-\x1f\x7f][^/\x00-\x1f\x7f]{0,99}$"  # as spec/validate.py's safe_name


class TaskStateName(StrEnum):
    PENDING = "PENDING"
    SUBMITTED = "SUBMITTED"
    ACTIVE = "ACTIVE"
    CLEANING = "CLEANING"
    FINALIZING = "FINALIZING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    KILLED = "KILLED"
    LOST = "LOST"
    UNREADABLE = "UNREADABLE"
    CORRUPT = "CORRUPT"


class JobStateName(StrEnum):
    PENDING = "PENDING"
    SUBMITTED = "SUBMITTED"
    ACTIVE = "ACTIVE"
    CLEANING = "CLEANING"
    FINALIZING = "FINALIZING"
    RUNNING = "RUNNING"  # ACTIVE, CLEANING, FINALIZING or SUBMITTED: holding a slot
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    KILLED = "KILLED"
    LOST = "LOST"


class Stream(StrEnum):
    stdout = "stdout"
    stderr = "stderr"


class ErrorBody(BaseModel):
    error: str


class RunView(BaseModel):
    run: int
    state: str
    pid: int | None
    exit_code: int | None
    started_at: str | None
    finished_at: str | None
    reason: str | None
    host: str | None = Field(None, description="a Slurm task's node (absent for local runs)")


class ProcessView(BaseModel):
    name: str
    final: bool
    runs: list[RunView]
    runs_dropped: int = 0  # earlier runs no longer kept (a process restarted more than 100 times)


class JobCounts(BaseModel):
    total: int
    pending: int
    running: int
    succeeded: int
    failed: int
    killed: int
    lost: int


class TaskView(BaseModel):
    """One element of `corral status --json` (an unreadable journal has only id, state, error)."""

    model_config = ConfigDict(extra="allow")
    id: str
    state: str
    kind: str | None = None
    name: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    supervised: bool | None = None
    supervisor_pid: int | None = None
    sandbox: str | None = None
    ports: dict[str, Any] | None = None
    dir: str | None = None
    processes: list[ProcessView] | None = None
    jobs: JobCounts | None = None
    halted: str | None = None
    error: str | None = None


class JobRow(BaseModel):
    job: int
    state: str
    attempts: int
    exit_code: int | None
    params: dict[str, Any]


class JobPage(BaseModel):
    matching: int = Field(description="jobs in the requested state (all jobs without a filter)")
    offset: int
    limit: int
    jobs: list[JobRow]


class EventPage(BaseModel):
    records: list[dict[str, Any]] = Field(description="journal records, each with its byte offset")
    next: int = Field(description="pass as ?after= to get the records that follow")
    size: int


class RotatedFile(BaseModel):
    index: int
    size: int


class LogChunk(BaseModel):
    file: str
    process: str
    run: int
    size: int
    offset: int
    next: int
    data: str
    live: bool
    rotated: list[RotatedFile]


class RunResources(BaseModel):
    job: int
    process: str
    run: int
    pid: int
    processes: int
    cpu_percent: float
    rss: int
    host: str | None = Field(None, description="the node a Slurm job's run is on (absent for local runs)")


class Resources(BaseModel):
    runs: list[RunResources]
    cpu_percent: float
    rss: int


class ControlBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    process: str | None = Field(None, pattern=PROCESS_NAME)
    job: int | None = Field(None, ge=0, le=MAX_JOB)
    grace: float | None = Field(None, ge=0, le=MAX_GRACE, allow_inf_nan=False)


class ControlAnswer(BaseModel):
    ok: bool
    detail: str


class SubmitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    params: list[dict[str, Any]] = Field(
        min_length=1, max_length=MAX_SUBMIT, description="one object of parameters per new job"
    )


class SubmitAnswer(BaseModel):
    jobs: list[int]
