"""Schemathesis against /api/v1/openapi.json: generated requests (bounded) never get a 5xx,
and every answer matches the document (status code, content type, body schema)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from observe_helpers import AUTH, TOKEN

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import checks  # noqa: E402

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def api_schema(observed: Any) -> Any:
    from corral.observe.app import create_app

    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", create_app(observed.root, TOKEN))


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_api_conforms_to_its_openapi_document(case: Any) -> None:
    if case.path.endswith("/events/stream"):
        pytest.skip("an endless stream; tested against a real server in test_serve.py")
    case.call_and_validate(headers=AUTH, checks=CHECKS)


def test_document_declares_the_error_shape(client: Any) -> None:
    doc = client.get("/api/v1/openapi.json").json()
    assert doc["components"]["schemas"]["Error"]["required"] == ["error"]
    assert {"/api/v1/tasks", "/api/v1/tasks/{task_id}/jobs", "/api/v1/tasks/{task_id}/logs"} <= set(
        doc["paths"]
    )
    for path in doc["paths"].values():
        for operation in path.values():
            assert operation["responses"]["404"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }
