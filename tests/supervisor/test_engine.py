"""The engine's write-ahead: a record reaches the journal only if it encodes, fits a frame and
the fold accepts it; what is refused leaves no trace for the journal's readers."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.core.records import JobsAdded, RunUpdate
from corral.core.task import FoldError
from corral.journal import MAX_FRAME
from corral.spec.load import load_spec
from corral.supervisor.layout import Layout
from corral.supervisor.session import create, replay


def _ensemble(tmp_path: Path):  # type: ignore[no-untyped-def]
    spec = tmp_path / "e.yaml"
    spec.write_text("name: e\njob:\n  cmd: 'true'\nparams:\n  n: [0, 1]\n")
    layout = Layout(tmp_path / "root", "e1")
    return layout, create(layout, load_spec(spec), context={})


def test_a_record_the_fold_refuses_is_taken_back(tmp_path: Path) -> None:
    layout, engine = _ensemble(tmp_path)
    before = engine.writer.pending
    with pytest.raises(FoldError):
        engine.record(RunUpdate(7, "main", 0, "RUNNING", 1.0))  # no job 7
    assert engine.writer.pending == before
    engine.writer.close()
    sup, _ = replay(layout)  # the journal's reader accepts everything in it
    assert sup.total == 2


@pytest.mark.parametrize(
    "params",
    [
        [{"n": 10**30}],  # an integer msgpack cannot hold
        [{"n": "x" * (MAX_FRAME + 1)}],  # larger than a frame
    ],
)
def test_a_record_that_cannot_be_written_changes_nothing(tmp_path: Path, params: list) -> None:
    layout, engine = _ensemble(tmp_path)
    with pytest.raises((OverflowError, ValueError)):
        engine.record(JobsAdded(2, params, 1.0))
    assert engine.sup.total == 2  # not folded
    engine.writer.close()
    sup, _ = replay(layout)
    assert sup.total == 2
