"""The ASGI application of `corral serve`: API, pages, metrics and static files behind the Guard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException

from corral.observe import api, pages
from corral.observe.auth import Guard
from corral.observe.catalog import Catalog
from corral.observe.metrics import CatalogCollector
from corral.observe.resources import Sampler

ERROR_STATUSES = ("400", "401", "403", "404", "409", "413", "422", "429", "502", "503", "504")


def create_app(root: Path, token: str, require_all: bool = False) -> Any:
    """The application for `root`. `require_all`: every request needs the token (non-loopback)."""
    app = FastAPI(
        title="corral observer",
        version="1",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # Swagger UI would load scripts from a CDN; the page must work offline
        redoc_url=None,
    )
    app.state.catalog = Catalog(root)
    app.state.sampler = Sampler()
    app.state.streams = 0
    registry = CollectorRegistry(auto_describe=True)
    registry.register(CatalogCollector(app.state.catalog))
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    _errors(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return Guard(app, token, require_all)


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith(("/api/", "/metrics")) and "text/html" in request.headers.get(
        "accept", ""
    )


def _error(request: Request, status: int, message: str) -> Response:
    if _wants_html(request):
        return pages.templates.TemplateResponse(
            request, "error.html", {"status": status, "message": message}, status_code=status
        )
    return JSONResponse({"error": message}, status_code=status)


def _errors(app: FastAPI) -> None:
    @app.exception_handler(api.ApiError)
    async def api_error(request: Request, exc: api.ApiError) -> Response:
        return _error(request, exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()))
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return _error(request, 422, "; ".join(problems) or "invalid request")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _error(request, exc.status_code, str(exc.detail))


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the error shape this server really sends for every 4xx/5xx."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = {
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
    }
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    body = {"schema": {"$ref": "#/components/schemas/Error"}}
    error = {"description": "error", "content": {"application/json": body}}
    for path in doc.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            for status in ERROR_STATUSES:
                responses[status] = error
    doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    doc["security"] = [{}, {"bearer": []}]
    app.openapi_schema = doc
    return doc
