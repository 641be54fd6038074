"""The web pages: server-rendered (Jinja2) task list, task, ensemble and log views. A little
plain JS (static/corral.js) refreshes the parts marked data-refresh and follows live logs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from corral.observe.api import ApiError, TaskId, catalog_of, fold_of
from corral.observe.catalog import NoSuchTask
from corral.observe.schemas import MAX_JOB, PROCESS_NAME, JobStateName, Stream
from corral.observe.views import job_page

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def duration(started: str | None, finished: str | None) -> str:
    """'1m 05s' between two ISO times of a view; up to now while a run is alive."""
    if not started:
        return ""
    begin = datetime.fromisoformat(started)
    end = datetime.fromisoformat(finished) if finished else datetime.now(begin.tzinfo)
    seconds = max(0, int((end - begin).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


templates.env.filters["duration"] = duration
router = APIRouter(include_in_schema=False)
PAGE = 50


def _render(request: Request, name: str, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context)


@router.get("/", response_class=HTMLResponse)
def task_list(request: Request) -> HTMLResponse:
    return _render(request, "tasks.html", tasks=catalog_of(request).views())


@router.get("/ui/tasks", response_class=HTMLResponse)
def task_rows(request: Request) -> HTMLResponse:
    return _render(request, "_task_rows.html", tasks=catalog_of(request).views())


def _view(request: Request, task_id: str) -> dict[str, Any]:
    try:
        return catalog_of(request).entry(task_id).view
    except NoSuchTask as exc:
        raise ApiError(404, str(exc)) from None


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
def task_page(
    request: Request,
    task_id: TaskId,
    state: JobStateName | None = None,
    offset: Annotated[int, Query(ge=0, le=MAX_JOB)] = 0,
) -> HTMLResponse:
    return _task(request, task_id, state, offset, ensemble="ensemble.html", task="task.html")


@router.get("/ui/tasks/{task_id}/body", response_class=HTMLResponse)
def task_body(
    request: Request,
    task_id: TaskId,
    state: JobStateName | None = None,
    offset: Annotated[int, Query(ge=0, le=MAX_JOB)] = 0,
) -> HTMLResponse:
    return _task(request, task_id, state, offset, ensemble="_ensemble_body.html", task="_task_body.html")


def _task(
    request: Request, task_id: str, state: JobStateName | None, offset: int, *, ensemble: str, task: str
) -> HTMLResponse:
    """A task's page or its refreshed body: the same view, an ensemble's with a page of jobs."""
    view = _view(request, task_id)
    if view.get("kind") == "ensemble":  # a status view (JSON): its text
        return _render(request, ensemble, task=view, **_jobs(request, task_id, state, offset))
    return _render(request, task, task=view)


def _jobs(request: Request, task_id: str, state: JobStateName | None, offset: int) -> dict[str, Any]:
    fold = fold_of(catalog_of(request), task_id)
    with fold.lock:
        matching, rows = job_page(fold.sup, state.value if state else None, offset, PAGE)
    return {
        "jobs": rows,
        "matching": matching,
        "offset": offset,
        "page": PAGE,
        "state": state.value if state else "",
        "states": [s.value for s in JobStateName],
    }


@router.get("/tasks/{task_id}/log", response_class=HTMLResponse)
def log_page(
    request: Request,
    task_id: TaskId,
    job: Annotated[int, Query(ge=0, le=MAX_JOB)] = 0,
    process: Annotated[str | None, Query(pattern=PROCESS_NAME)] = None,
    run: Annotated[int | None, Query(ge=0, le=MAX_JOB)] = None,
    stream: Stream = Stream.stdout,
) -> HTMLResponse:
    view = _view(request, task_id)
    query = {"job": job, "stream": stream.value}
    if process:
        query["process"] = process
    if run is not None:
        query["run"] = run
    return _render(request, "log.html", task=view, query=query, job=job, process=process, run=run)
