"""The JSON API under /api/v1. Handlers decode (FastAPI + pydantic, with ranges), ask the
catalog or the control module, and answer; errors are {"error": ...} with a 4xx status."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette.sse import EventSourceResponse

from corral.core.records import JournalKind
from corral.journal import JournalError
from corral.observe import control, events, logs
from corral.observe.catalog import Catalog, NoSuchTask
from corral.observe.folds import Fold
from corral.observe.nodereport import remote_resources
from corral.observe.schemas import (
    MAX_JOB,
    PROCESS_NAME,
    ControlAnswer,
    ControlBody,
    EventPage,
    JobPage,
    JobStateName,
    LogChunk,
    Resources,
    Stream,
    SubmitAnswer,
    SubmitBody,
    TaskStateName,
    TaskView,
)
from corral.observe.views import job_page
from corral.supervisor.session import SessionError

TaskId = Annotated[
    str, Path(min_length=1, max_length=128, description="a task or ensemble id", examples=["sweep-1"])
]
JobNumber = Annotated[int, Path(ge=0, le=MAX_JOB)]
MAX_STREAMS = 64  # live event streams at once; each polls its journal


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json")


def catalog_of(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


def fold_of(catalog: Catalog, task_id: str) -> Fold:
    try:
        return catalog.fold(task_id)
    except NoSuchTask as exc:
        raise ApiError(404, str(exc)) from None
    except FileNotFoundError:
        raise ApiError(404, f"{task_id}: no such task") from None
    except OSError as exc:
        raise ApiError(403, f"{task_id}: refused ({exc.strerror})") from None
    except (JournalError, SessionError) as exc:
        raise ApiError(409, f"{task_id}: unreadable journal: {exc}") from None


def _ensemble(fold: Fold) -> None:
    if fold.sup.kind != JournalKind.ENSEMBLE:
        raise ApiError(404, f"{fold.layout.id}: a task, not an ensemble; it has no jobs")


router = APIRouter(prefix="/api/v1")


@router.get("/tasks", response_model=list[TaskView], summary="tasks and ensembles (as status --json)")
def list_tasks(
    request: Request,
    pattern: Annotated[str | None, Query(max_length=200, description="fnmatch pattern on ids")] = None,
    state: TaskStateName | None = None,
) -> Response:
    listing = catalog_of(request).encoded_list(pattern, state.value if state else None)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(
            listing.gzipped,
            media_type="application/json",
            headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
        )
    return Response(listing.body, media_type="application/json", headers={"Vary": "Accept-Encoding"})


@router.get("/tasks/{task_id}", response_model=TaskView, summary="one task with processes and runs")
def get_task(request: Request, task_id: TaskId) -> Response:
    catalog = catalog_of(request)
    try:
        entry = catalog.entry(task_id)
    except NoSuchTask as exc:
        raise ApiError(404, str(exc)) from None
    return Response(entry.encoded, media_type="application/json")


@router.get("/tasks/{task_id}/jobs", response_model=JobPage, summary="a page of an ensemble's jobs")
def list_jobs(
    request: Request,
    task_id: TaskId,
    state: JobStateName | None = None,
    offset: Annotated[int, Query(ge=0, le=MAX_JOB)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    fold = fold_of(catalog_of(request), task_id)
    _ensemble(fold)
    with fold.lock:
        matching, rows = job_page(fold.sup, state.value if state else None, offset, limit)
    return _json({"matching": matching, "offset": offset, "limit": limit, "jobs": rows})


@router.get("/tasks/{task_id}/events", response_model=EventPage, summary="journal records after an offset")
def get_events(
    request: Request,
    task_id: TaskId,
    after: Annotated[int, Query(ge=0, le=2**53)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Response:
    fold = fold_of(catalog_of(request), task_id)
    try:
        page = events.read_after(fold.layout, after, limit)
    except events.NotABoundary as exc:
        raise ApiError(400, str(exc)) from None
    except (OSError, JournalError) as exc:
        raise ApiError(409, f"{task_id}: {exc}") from None
    return _json(page)


@router.get(
    "/tasks/{task_id}/events/stream",
    summary="journal records as Server-Sent Events (id = the offset after the record)",
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
    response_class=Response,
)
async def stream_events(
    request: Request,
    task_id: TaskId,
    after: Annotated[int, Query(ge=0, le=2**53)] = 0,
) -> Response:
    fold = fold_of(catalog_of(request), task_id)
    state = request.app.state
    if state.streams >= MAX_STREAMS:
        raise ApiError(429, f"at most {MAX_STREAMS} event streams at once")
    try:
        events.read_after(fold.layout, after, 1)
    except events.NotABoundary as exc:
        raise ApiError(400, str(exc)) from None
    last_id = request.headers.get("last-event-id", "")
    start = int(last_id) if last_id.isdigit() and int(last_id) <= 2**53 else after
    return EventSourceResponse(events.stream(request, fold.layout, start), ping=15)


@router.get("/tasks/{task_id}/logs", response_model=LogChunk, summary="a byte range of a run's log")
def get_logs(
    request: Request,
    task_id: TaskId,
    process: Annotated[str | None, Query(pattern=PROCESS_NAME)] = None,
    job: Annotated[int, Query(ge=0, le=MAX_JOB)] = 0,
    run: Annotated[int | None, Query(ge=0, le=MAX_JOB)] = None,
    stream: Stream = Stream.stdout,
    rotated: Annotated[int, Query(ge=0, le=999, description="0 = the live file, N = backup .N")] = 0,
    offset: Annotated[int | None, Query(ge=0, le=2**53, description="absent: the last `limit` bytes")] = None,
    limit: Annotated[int, Query(ge=1, le=logs.MAX_CHUNK)] = 65536,
) -> Response:
    fold = fold_of(catalog_of(request), task_id)
    try:
        with fold.lock:
            located = logs.locate(fold, job, process, run, stream.value)
        return _json(logs.read_range(fold, located, rotated, offset, limit))
    except logs.LogMissing as exc:
        if rotated == 0 and fold.sup.kind == JournalKind.ENSEMBLE:  # streamed by a pilot worker?
            try:
                with fold.lock:
                    return _json(logs.read_streamed(fold, job, process, run, stream.value, offset, limit))
            except logs.LogMissing:
                pass
            except logs.LogRefused as refused:
                raise ApiError(403, str(refused)) from None
        raise ApiError(404, str(exc)) from None
    except logs.LogRefused as exc:
        raise ApiError(403, str(exc)) from None


@router.get("/tasks/{task_id}/resources", response_model=Resources, summary="CPU and memory of live runs")
def get_resources(request: Request, task_id: TaskId) -> Response:
    fold = fold_of(catalog_of(request), task_id)
    if fold.sup.remote:  # Slurm: measured on the nodes, read from their live.json
        with fold.lock:
            return _json(remote_resources(fold.layout.dir, fold.sup, time.time()))
    with fold.lock:
        live = {job: rt for job, rt in fold.sup.jobs.items() if rt.live_runs()}
    return _json(request.app.state.sampler.sample_runtimes(live))


async def _control(request: Request, task_id: str, op: str, body: ControlBody) -> Response:
    fold = await asyncio.to_thread(fold_of, catalog_of(request), task_id)
    layout = fold.layout
    message: dict[str, Any] = {"op": op, "job": body.job}
    if op == "kill":
        message["grace"] = body.grace
    if op in ("pause", "resume"):
        message["process"] = body.process
    outcome = await control.ask_supervisor(layout, message)
    if outcome is None:
        if fold.sup.terminal:
            raise ApiError(409, f"{task_id}: already {fold.sup.state.value}")
        if op == "kill":
            outcome = await control.start_kill(layout, control.kill_args(body.grace, body.job))
        else:
            args = [op, task_id]
            if op != "lose" and body.process:
                args.append(body.process)
            if op != "lose" and body.job is not None:
                args += ["--job", str(body.job)]
            outcome = await control.run_cli(layout, *args)
    elif outcome.status == 200:
        outcome = control.Outcome(200, {"ok": True, "detail": f"{op} sent to the supervisor"})
    return _json(outcome.body, outcome.status)


_CONTROL_DOC: dict[int | str, dict[str, Any]] = {202: {"model": ControlAnswer}}


@router.post("/tasks/{task_id}/kill", response_model=ControlAnswer, responses=_CONTROL_DOC)
async def kill(request: Request, task_id: TaskId, body: ControlBody) -> Response:
    """Graceful kill (final processes run); with no live supervisor, as `corral kill` does."""
    return await _control(request, task_id, "kill", body)


@router.post("/tasks/{task_id}/pause", response_model=ControlAnswer)
async def pause(request: Request, task_id: TaskId, body: ControlBody) -> Response:
    return await _control(request, task_id, "pause", body)


@router.post("/tasks/{task_id}/resume", response_model=ControlAnswer)
async def resume(request: Request, task_id: TaskId, body: ControlBody) -> Response:
    return await _control(request, task_id, "resume", body)


@router.post("/tasks/{task_id}/lose", response_model=ControlAnswer)
async def lose(request: Request, task_id: TaskId, body: ControlBody) -> Response:
    """Give up: kill every live process tree, no finalizers, LOST."""
    return await _control(request, task_id, "lose", body)


@router.post("/tasks/{task_id}/jobs", response_model=SubmitAnswer, summary="submit jobs (corral submit)")
async def submit(request: Request, task_id: TaskId, body: SubmitBody) -> Response:
    fold = await asyncio.to_thread(fold_of, catalog_of(request), task_id)
    _ensemble(fold)
    outcome = await control.ask_supervisor(fold.layout, {"op": "submit", "params": body.params})
    if outcome is None:
        raise ApiError(409, f"{task_id}: no live supervisor to submit to")
    if outcome.status != 200:
        return _json(outcome.body, outcome.status)
    return _json({"jobs": outcome.body.get("jobs", [])})


@router.post("/tasks/{task_id}/jobs/{job}/heartbeat", response_model=ControlAnswer)
async def heartbeat(request: Request, task_id: TaskId, job: JobNumber) -> Response:
    fold = await asyncio.to_thread(fold_of, catalog_of(request), task_id)
    _ensemble(fold)
    if job >= fold.sup.total:
        raise ApiError(404, f"{task_id}: no job {job}")
    outcome = await control.ask_supervisor(fold.layout, {"op": "heartbeat", "job": job})
    if outcome is None:
        raise ApiError(409, f"{task_id}: no live supervisor")
    if outcome.status != 200:
        return _json(outcome.body, outcome.status)
    return _json({"ok": True, "detail": "heartbeat recorded"})


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
