"""Hostile requests: no token, a wrong token, another site, huge or garbage bodies, negative
offsets, path traversal, symlinks. Each is refused with a 4xx and changes nothing."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from observe_helpers import AUTH, TOKEN, Corral, app_client, wait_for

from corral.observe.app import create_app
from corral.observe.auth import MAX_BODY, TokenError, load_or_create_token

CONTROLS = [
    ("/api/v1/tasks/live-1/kill", {}),
    ("/api/v1/tasks/live-1/lose", {}),
    ("/api/v1/tasks/live-1/pause", {}),
    ("/api/v1/tasks/live-1/resume", {}),
    ("/api/v1/tasks/live-1/jobs", {"params": [{"n": 1}]}),
    ("/api/v1/tasks/live-1/jobs/0/heartbeat", None),
]


def _journal_size(corral: Corral) -> int:
    return (corral.root / "live-1" / "journal").stat().st_size


@pytest.mark.parametrize(("path", "body"), CONTROLS)
def test_control_without_or_with_a_wrong_token_is_refused_and_changes_nothing(
    client: Any, observed: Corral, path: str, body: Any, caplog: pytest.LogCaptureFixture
) -> None:
    before = _journal_size(observed)
    missing = client.post(path, json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    wrong = client.post(path, json=body, headers={"Authorization": "Bearer " + "x" * len(TOKEN)})
    assert wrong.status_code == 403
    basic = client.post(path, json=body, headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 403
    assert _journal_size(observed) == before
    assert client.get("/api/v1/tasks/live-1").json()["state"] == "ACTIVE"
    assert sum("refused POST" in r.getMessage() for r in caplog.records) >= 3
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


def test_cross_site_control_is_refused_even_with_the_token(client: Any, observed: Corral) -> None:
    before = _journal_size(observed)
    evil = client.post(
        "/api/v1/tasks/live-1/pause", json={}, headers={**AUTH, "Origin": "http://evil.example"}
    )
    assert evil.status_code == 403 and "cross-origin" in evil.json()["error"]
    fetch = client.post(
        "/api/v1/tasks/live-1/pause", json={}, headers={**AUTH, "Sec-Fetch-Site": "cross-site"}
    )
    assert fetch.status_code == 403
    # a form post from another site has neither the token nor JSON: refused before decoding
    form = client.post(
        "/api/v1/tasks/live-1/kill", data={"grace": "0"}, headers={"Origin": "http://evil.example"}
    )
    assert form.status_code == 401
    assert _journal_size(observed) == before
    # no CORS grant: a preflight gets nothing that lets a browser send the real request
    preflight = client.options(
        "/api/v1/tasks/live-1/kill",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_same_origin_post_is_accepted(client: Any) -> None:
    answer = client.post(
        "/api/v1/tasks/live-1/jobs/0/heartbeat", headers={**AUTH, "Origin": "http://testserver"}
    )
    assert answer.status_code == 200, answer.text


def test_huge_and_garbage_bodies(client: Any, observed: Corral) -> None:
    before = _journal_size(observed)
    huge = client.post(
        "/api/v1/tasks/live-1/jobs",
        content=b"[" * (MAX_BODY + 1),
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert huge.status_code == 413

    def chunks() -> Any:  # no Content-Length: counted as it arrives
        for _ in range(MAX_BODY // 65536 + 2):
            yield b" " * 65536

    streamed = client.post(
        "/api/v1/tasks/live-1/jobs", content=chunks(), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    for body in (
        b"{garbage",
        b"\xff\xfe",
        b"[]",
        b'{"params": "x"}',
        b'{"params": []}',
        b'{"params": [1]}',
        b'{"params": [{}], "extra": 1}',
        b"null",
    ):
        answer = client.post(
            "/api/v1/tasks/live-1/jobs", content=body, headers={**AUTH, "Content-Type": "application/json"}
        )
        assert answer.status_code == 422, (body, answer.text)
        assert isinstance(answer.json()["error"], str)
    for body in ({"grace": -1}, {"grace": "soon"}, {"job": -3}, {"job": 2**40}, {"process": "../etc"}):
        assert client.post("/api/v1/tasks/live-1/kill", json=body, headers=AUTH).status_code == 422
    assert _journal_size(observed) == before


@pytest.mark.parametrize(
    "query",
    [
        {"offset": -1},
        {"limit": -5},
        {"limit": 10**9},
        {"job": -1},
        {"run": -2},
        {"process": "../../etc/passwd"},
        {"process": ".hidden"},
        {"process": "a/b"},
        {"stream": "stdin"},
        {"rotated": -1},
        {"offset": "abc"},
    ],
)
def test_bad_log_queries_are_4xx(client: Any, query: dict[str, Any]) -> None:
    answer = client.get("/api/v1/tasks/web-1/logs", params=query)
    assert answer.status_code == 422, answer.text
    assert "error" in answer.json()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/tasks/..",
        "/api/v1/tasks/.hidden",
        "/api/v1/tasks/%2e%2e%2fetc",
        "/api/v1/tasks/a%00b",
        "/api/v1/tasks/" + "a" * 300,
        "/api/v1/tasks/..%2F..%2Fetc/logs",
        "/api/v1/tasks/-x/events",
        "/api/v1/tasks/web-1/events?after=-1",
        "/api/v1/tasks/sweep-1/jobs?offset=-1",
    ],
)
def test_path_traversal_in_ids_is_refused(client: Any, path: str) -> None:
    answer = client.get(path)
    assert 400 <= answer.status_code < 500, answer.text
    assert "error" in answer.json()


def test_symlinked_log_files_are_not_followed(client: Any, observed: Corral, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("do not serve me\n")
    logs = observed.root / "web-1" / "logs"
    link = logs / "server.7.stdout"
    link.symlink_to(secret)
    backup = logs / "server.1.stdout.1"
    backup.symlink_to(secret)
    try:
        answer = client.get("/api/v1/tasks/web-1/logs", params={"process": "server", "run": 7})
        assert answer.status_code in (403, 404) and "do not serve" not in answer.text
        rotated = client.get("/api/v1/tasks/web-1/logs", params={"process": "server", "run": 1, "rotated": 1})
        assert rotated.status_code == 403 and "do not serve" not in rotated.text
    finally:
        link.unlink()
        backup.unlink()


def test_a_symlinked_task_directory_is_not_served(client: Any, observed: Corral) -> None:
    alias = observed.root / "alias-1"
    alias.symlink_to(observed.root / "web-1")
    try:
        assert "alias-1" not in [v["id"] for v in client.get("/api/v1/tasks").json()]
        for path in ("", "/events", "/logs?process=server"):
            answer = client.get(f"/api/v1/tasks/alias-1{path}")
            assert answer.status_code in (403, 404), answer.text
    finally:
        alias.unlink()


def test_off_loopback_every_request_needs_the_token(observed: Corral) -> None:
    with app_client(create_app(observed.root, TOKEN, require_all=True)) as client:
        for path in ("/api/v1/tasks", "/", "/metrics", "/api/v1/openapi.json", "/static/corral.js"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 403
            assert client.get(path, headers=AUTH).status_code == 200


def test_token_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "root" / "serve.token"
    token = load_or_create_token(path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(token) >= 32
    assert load_or_create_token(path, create=True) == token
    os.chmod(path, 0o644)
    with pytest.raises(TokenError, match="readable by others"):
        load_or_create_token(path, create=True)


def test_token_file_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("x" * 40)
    os.chmod(target, 0o600)
    link = tmp_path / "serve.token"
    link.symlink_to(target)
    with pytest.raises(TokenError):
        load_or_create_token(link, create=True)
    with pytest.raises(TokenError, match="no such token file"):
        load_or_create_token(tmp_path / "missing", create=False)


def test_refused_requests_leave_the_live_ensemble_running(client: Any, observed: Corral) -> None:
    wait_for(lambda: client.get("/api/v1/tasks/live-1").json()["jobs"]["running"] >= 2)


def test_a_trickling_body_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from corral.observe import auth

    monkeypatch.setattr(auth, "BODY_DEADLINE", 0.2)
    reached: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope)

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)  # a client that never finishes its body
        return {}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/tasks/live-1/kill",
        "headers": [(b"authorization", f"Bearer {TOKEN}".encode())],
    }
    asyncio.run(auth.Guard(app, TOKEN, require_all=False)(scope, receive, send))
    assert sent[0]["status"] == 408 and reached == []
