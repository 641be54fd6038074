"""An executor's files are as private as any task's: 0600 files in 0700 directories, even
under a umask of 022 (the calls' logs, payloads and results included)."""

from __future__ import annotations

from pathlib import Path

import executor_calls as calls
import pytest

import corral
from file_modes import mode, regular_files

pytestmark = pytest.mark.usefixtures("umask_022")


def test_call_logs_payloads_and_results_are_private(root: Path) -> None:
    with corral.Executor(id="private", root=root, max_workers=2) as ex:
        assert [f.result(timeout=120) for f in [ex.submit(calls.say, f"t{i}") for i in range(4)]] == [
            f"t{i}" for i in range(4)
        ]
    task = root / "private"
    files = regular_files(task)
    names = {p.name for p in files}
    assert any(n.endswith(".stdout") for n in names) and any(n.endswith(".stderr") for n in names)
    assert any(n.endswith(".in") for n in names) and any(n.endswith(".out") for n in names)
    assert {str(p): oct(mode(p)) for p in files if mode(p) != 0o600} == {}
    dirs = [task, *[d for d in task.rglob("*") if d.is_dir()]]
    assert {str(d): oct(mode(d)) for d in dirs if mode(d) != 0o700} == {}
