"""The README's examples keep working (the quick start runs them)."""

from __future__ import annotations

import socket
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sweep_example_runs(corral):
    result = corral("run", str(EXAMPLES / "sweep.yaml"), "--id", "sweep-1")
    assert result.returncode == 0, result.stderr
    view = corral.status("sweep-1")
    assert view["jobs"]["succeeded"] == 60
    assert (corral.root / "sweep-1" / "jobs" / "59" / "out.txt").read_text().strip() == "alpha=0.5 seed=19"


def test_web_example_runs(corral):
    result = corral("run", str(EXAMPLES / "web.yaml"), "-P", f"http={_free_port()}", "--id", "web-1")
    assert result.returncode == 0, result.stderr
    assert corral("tail", "web-1", "client").stdout.strip() == "hello"
    assert corral.status("web-1")["state"] == "SUCCESS"
