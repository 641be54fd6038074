"""Incremental folds equal a full replay; unchanged journals are not read again; liveness is
read from /proc/locks without taking a lock."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from observe_helpers import Corral

from corral.journal import read_journal
from corral.journal.frame import HEADER_SIZE
from corral.observe import liveness
from corral.observe.catalog import Catalog
from corral.observe.folds import Folds
from corral.observe.views import job_page, view
from corral.supervisor.layout import Layout
from corral.supervisor.session import SessionError, replay


def _copy_prefix(src: Path, dst: Path, frames: int) -> list[int]:
    """dst/journal = the header and the first `frames` frames of src/journal; returns offsets."""
    contents = read_journal(src / "journal")
    data = (src / "journal").read_bytes()
    dst.mkdir()
    cut = contents.offsets[frames] if frames < len(contents.offsets) else contents.end
    (dst / "journal").write_bytes(data[:cut])
    return contents.offsets


def test_a_fold_grown_frame_by_frame_equals_a_replay(observed: Corral, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    src = observed.root / "sweep-1"
    offsets = _copy_prefix(src, root / "sweep-1", 1)
    data = (src / "journal").read_bytes()
    folds = Folds(root)
    first = folds.get("sweep-1")
    step = max(1, len(offsets) // 7)
    for n in range(1, len(offsets) + step, step):
        end = offsets[n] if n < len(offsets) else len(data)
        with open(root / "sweep-1" / "journal", "r+b") as f:
            f.seek(0, os.SEEK_END)
            f.write(data[f.tell() : end + 5])  # and a torn start of the next frame
        assert folds.get("sweep-1") is first  # the same fold, grown
    with open(root / "sweep-1" / "journal", "r+b") as f:
        f.truncate(len(data))
    layout = Layout(root, "sweep-1")
    sup, _ = replay(layout)
    fold = folds.get("sweep-1")
    assert view(fold.sup, layout, False) == view(sup, layout, False)
    assert job_page(fold.sup, "FAILED", 0, None) == job_page(sup, "FAILED", 0, None)


def test_a_replaced_or_shrunk_journal_is_folded_again(observed: Corral, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    shutil.copytree(observed.root / "web-1", root / "web-1", symlinks=True)
    folds = Folds(root)
    before = folds.get("web-1")
    journal = root / "web-1" / "journal"
    replacement = root / "web-1" / "journal.new"
    shutil.copy(journal, replacement)
    os.replace(replacement, journal)  # as compaction does: a new inode
    after = folds.get("web-1")
    assert after is not before and after.sup.state == before.sup.state
    with open(journal, "r+b") as f:
        f.truncate(HEADER_SIZE + 1)  # shrunk to a torn first frame
    with pytest.raises(SessionError, match="no records"):
        folds.get("web-1")


def test_unchanged_journals_are_not_read_again(observed: Corral, monkeypatch: Any) -> None:
    catalog = Catalog(observed.root)
    catalog.views()
    calls: list[str] = []
    real = catalog.folds.get
    monkeypatch.setattr(catalog.folds, "get", lambda task_id: calls.append(task_id) or real(task_id))
    for _ in range(3):
        catalog.views()
    assert "web-1" not in calls and "sweep-1" not in calls


def test_liveness_comes_from_proc_locks(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    journal.write_bytes(b"")
    fd = os.open(str(journal) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        assert not liveness.supervised(journal, liveness.held_flocks())
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert liveness.supervised(journal, liveness.held_flocks())
    finally:
        os.close(fd)
    assert not liveness.supervised(journal, liveness.held_flocks())


def test_proc_locks_lines_that_are_not_write_flocks_are_ignored(tmp_path: Path) -> None:
    fake = tmp_path / "locks"
    fake.write_text(
        "1: POSIX  ADVISORY  WRITE 3171 fe:00:1442499 0 EOF\n"
        "2: FLOCK  ADVISORY  WRITE 4242 fe:01:77 0 EOF\n"
        "3: FLOCK  ADVISORY  READ 4243 fe:01:78 0 EOF\n"
        "3: -> FLOCK  ADVISORY  WRITE 4244 fe:01:79 0 EOF\n"
        "garbage\n4: FLOCK ADVISORY WRITE 1 zz:yy:xx 0 EOF\n"
    )
    assert liveness.held_flocks(str(fake)) == {(0xFE, 0x01, 77)}
    assert liveness.held_flocks(str(tmp_path / "missing")) == set()
