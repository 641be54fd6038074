"""Executor tests: a root per test; whatever an executor left running is killed afterwards."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import executor_calls
from leftovers import kill_leftovers

# calls are pickled by value: the call's process needs no import of the test package
cloudpickle.register_pickle_by_value(executor_calls)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "root"
    path.mkdir()
    yield path
    kill_leftovers(path)
