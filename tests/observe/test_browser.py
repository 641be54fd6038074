"""The web page in a real headless Chromium (Debian's, driven by Playwright; see
shared/design/BROWSER.md): the task list, an ensemble, its failed jobs, a live log growing.
Screenshots go to $CORRAL_SCREENSHOTS (default: the test's tmp dir)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from observe_helpers import Corral, Server

CHROMIUM = "/usr/bin/chromium-headless-shell"
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip)")
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium-headless-shell)", allow_module_level=True)


@pytest.fixture(scope="module")
def server(observed: Corral) -> Iterator[Server]:
    server = Server(observed.root)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("CORRAL_SCREENSHOTS", tmp_path))
    where.mkdir(parents=True, exist_ok=True)
    return where


def test_task_list_ensemble_failed_jobs_and_a_live_log(server: Server, browser: Any, shots: Path) -> None:
    expect = playwright_api.expect
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(server.url + "/")
    tasks = page.locator("#tasks")
    for task_id in ("live-1", "sweep-1", "web-1"):
        expect(tasks).to_contain_text(task_id, timeout=10_000)
    page.screenshot(path=str(shots / "tasks.png"), full_page=True)

    page.get_by_role("link", name="sweep-1").click()
    expect(page.locator("#counts")).to_contain_text("120 total", timeout=10_000)
    expect(page.locator("#counts")).to_contain_text("24 failed")
    page.screenshot(path=str(shots / "ensemble.png"), full_page=True)

    page.locator("#filters").get_by_role("link", name="failed").click()
    expect(page).to_have_url(re.compile(r"state=FAILED"))
    rows = page.locator("#jobs tbody tr")
    expect(rows).to_have_count(24, timeout=10_000)
    expect(page.locator("#jobs")).not_to_contain_text("SUCCESS")
    expect(rows.first).to_contain_text("seed=0")
    page.screenshot(path=str(shots / "failed-jobs.png"), full_page=True)

    page.goto(server.url + "/tasks/live-1/log?job=0")
    log = page.locator("#log")
    expect(log).to_contain_text("tick", timeout=10_000)
    expect(page.locator("#log-status")).to_contain_text("live, following")
    ticks = [int(n) for n in re.findall(r"tick (\d+)", log.inner_text())]
    last = max(ticks)
    # new lines arrive while we watch (the job prints one every 0.2 s)
    expect(log).to_contain_text(f"tick {last + 5}\n", timeout=15_000)
    page.screenshot(path=str(shots / "live-log.png"), full_page=True)

    page.goto(server.url + "/tasks/live-1")
    expect(page.locator("#body")).to_contain_text("ACTIVE", timeout=10_000)
    expect(page.locator("#resources tbody tr")).to_have_count(2, timeout=10_000)  # CPU/memory per live run
    expect(page.locator("#resources")).to_contain_text("MiB")
    page.screenshot(path=str(shots / "live-ensemble.png"), full_page=True)
    page.goto(server.url + "/tasks/web-1")
    expect(page.locator("#processes")).to_contain_text("server")
    expect(page.locator("#resources")).to_contain_text("no live runs", timeout=10_000)
    page.screenshot(path=str(shots / "task.png"), full_page=True)
    assert errors == []
