"""Helpers shared by the journal tests (imported by name: tests/journal is on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import corral.journal

# The directory that holds the `corral` package, for child processes.
SRC = str(Path(corral.journal.__file__).resolve().parents[2])


def payloads_of_varied_sizes(count: int = 50) -> list[bytes]:
    """Deterministic payloads from 1 byte to a few hundred, including zero bytes inside."""
    return [bytes((i * 7 + j) % 256 for j in range(1 + (i * 37) % 300)) for i in range(count)]


def spawn_python(code: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=SRC)
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
