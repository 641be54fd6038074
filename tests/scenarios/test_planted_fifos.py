"""A FIFO in place of one of a task's files (the journal, its lock, the checkpoint, the reaper's
ledger, a run's log). Opening a FIFO for reading blocks until someone opens it for writing,
so every reader that opened such a file hung: `corral status` of the whole root, `read`,
`tail`, `recover`, `gc`, `kill`. Each now answers (a line naming the file, or the task read
without the cache) within its deadline, with no traceback."""

from __future__ import annotations

import os

import pytest

ONE = 'name: one\nprocesses: [{name: a, cmd: "echo hi"}]\n'
FILES = ["journal", "journal.lock", "checkpoint", "reaper.log", "logs/a.0.stdout"]
COMMANDS = [
    ["status"],
    ["status", "t", "--json"],
    ["read", "t"],
    ["tail", "t", "a"],
    ["gc", "t", "--dry-run"],
    ["recover", "t"],
    ["kill", "t"],
]


@pytest.mark.parametrize("planted", FILES)
def test_no_command_hangs_on_a_fifo_planted_in_a_task(corral, spec_file, planted):
    corral("run", str(spec_file(ONE)), "--id", "t", check=True)
    path = corral.root / "t" / planted
    path.unlink()
    os.mkfifo(path, 0o600)
    for command in COMMANDS:
        result = corral(*command, timeout=120)  # it hung forever: TimeoutExpired
        assert result.returncode in (0, 2), (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, (command, result.stderr)
        if result.returncode == 2:
            assert len(result.stderr.strip().splitlines()) == 1, (command, result.stderr)
