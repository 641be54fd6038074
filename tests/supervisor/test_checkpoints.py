"""ROOT/ID/checkpoint: readers and recovery start from it, and nothing wrong with it (missing,
torn, garbage, another journal's, a symlink) changes what they see: they replay instead."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from corral.core.records import Attached, Compacted, Opened, Record, RunUpdate, Transition, encode
from corral.core.states import ENSEMBLE
from corral.journal import open_for_append
from corral.spec.model import Ensemble, JobTemplate
from corral.supervisor import checkpoints
from corral.supervisor.layout import Layout
from corral.supervisor.session import replay


def _records(ens_id: str, jobs: int, done: int) -> list[Record]:
    ens = Ensemble(name="e", job=JobTemplate(argv=("true",)), params={"x": list(range(jobs))}, retries=1)
    out: list[Record] = [
        Opened("ensemble", ens_id, msgspec.to_builtins(ens), 1.0, "h", "b"),
        Attached(1, 1, 1.0, "h", "b"),
        Transition(ENSEMBLE, "ACTIVE", 1.0),
    ]
    for job in range(done):
        code = 1 if job % 3 == 0 else 0
        out += [
            Transition(job, "ACTIVE", 2.0 + job),
            RunUpdate(job, "main", 0, "LAUNCHING", 2.0 + job),
            RunUpdate(job, "main", 0, "SUCCESS" if code == 0 else "FAILED", 2.5 + job, exit_code=code),
            Transition(job, "SUCCESS" if code == 0 else "FAILED", 2.6 + job),
        ]
    out.append(Transition(done, "ACTIVE", 100.0))  # one job still running
    out.append(RunUpdate(done, "main", 0, "LAUNCHING", 100.0))
    return out


def _journal(tmp_path: Path, records: list[Record], cut: int) -> tuple[Layout, int]:
    """A journal of `records` with a checkpoint of the first `cut` of them."""
    layout = Layout(tmp_path, "e1")
    layout.dir.mkdir(parents=True)
    writer, _ = open_for_append(layout.journal, create=True)
    writer.append_many(encode(r) for r in records[:cut])
    writer.commit()
    offset = writer.size
    sup, _ = replay(layout)
    checkpoints.write(layout, sup, offset, cut, 0.0)
    writer.append_many(encode(r) for r in records[cut:])
    writer.close()
    return layout, offset


def _table(sup) -> tuple:  # type: ignore[no-untyped-def]
    return (
        sup.state,
        list(sup.states),
        list(sup.attempts),
        list(sup.exit_codes),
        sorted(sup.live),
        sorted(sup.retry_set()),
        dict(sup.counts),
        sorted(sup.jobs),
    )


def test_a_reader_starts_from_the_checkpoint_and_folds_the_same(tmp_path: Path) -> None:
    records = _records("e1", 20, 12)
    layout, offset = _journal(tmp_path, records, 30)
    found = checkpoints.restored(layout, None)
    assert found is not None and found[2] == offset
    assert _table(checkpoints.fold_journal(layout)) == _table(replay(layout)[0])


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "empty", "flipped", "other journal", "symlink", "directory", "past the end"],
)
def test_a_bad_checkpoint_is_ignored(tmp_path: Path, damage: str) -> None:
    records = _records("e1", 20, 12)
    layout, _ = _journal(tmp_path, records, 30)
    path = Path(checkpoints.path_of(layout))
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(os.urandom(len(data)))
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "flipped":
        path.write_bytes(data[:-3] + bytes([data[-3] ^ 0x40]) + data[-2:])
    elif damage == "other journal":
        other, _ = _journal(tmp_path / "x", _records("e1", 21, 12), 30)  # another spec
        path.write_bytes(Path(checkpoints.path_of(other)).read_bytes())
    elif damage == "symlink":
        target = tmp_path / "elsewhere"
        target.write_bytes(data)
        path.unlink()
        path.symlink_to(target)
    elif damage == "directory":
        path.unlink()
        path.mkdir()
    elif damage == "past the end":
        with open(layout.journal, "r+b") as f:
            f.truncate(200)  # a journal shorter than the checkpoint claims (a new one, same id)
        with pytest.raises(Exception):  # noqa: B017  (the truncated journal itself is torn)
            replay(layout)
        assert checkpoints.restored(layout, None) is None
        return
    assert checkpoints.restored(layout, None) is None
    assert _table(checkpoints.fold_journal(layout)) == _table(replay(layout)[0])


def test_open_for_append_from_a_checkpoint_reads_only_what_follows(tmp_path: Path) -> None:
    records = _records("e1", 20, 12)
    layout, offset = _journal(tmp_path, records, 30)
    writer, payloads = open_for_append(layout.journal, create=False, resume_at=offset)
    assert writer.read_from == offset and len(payloads) == len(records) - 30
    writer.close()
    # not a frame boundary: the whole journal is read, as without a checkpoint
    writer, payloads = open_for_append(layout.journal, create=False, resume_at=offset + 3)
    assert writer.read_from == 0 and len(payloads) == len(records)
    writer.close()


@pytest.mark.parametrize("from_checkpoint", [True, False])
def test_a_supervisor_that_resumed_from_the_checkpoint_counts_every_record(
    tmp_path: Path, from_checkpoint: bool
) -> None:
    # recovery reads only the frames after the checkpoint; what it counts (a compaction's
    # threshold, and "compacted: N records" that `read` shows) is still the whole journal's
    from corral.journal import read_journal
    from corral.supervisor.compaction import Compactor
    from corral.supervisor.session import take_over

    records = _records("e1", 20, 12)
    layout, _ = _journal(tmp_path, records, 30)
    if not from_checkpoint:
        os.unlink(checkpoints.path_of(layout))
    engine, _ = take_over(layout)
    try:
        assert (checkpoints.restored(layout, None) is not None) == from_checkpoint
        frames = len(read_journal(layout.journal).payloads)  # with what the recovery recorded
        assert engine.writer.frames == frames
        Compactor(layout, engine.writer, lambda _point: None).compact(engine.sup, 500.0)
        _, after = replay(layout)
        assert isinstance(after[1], Compacted) and after[1].records == frames - 1  # all but Opened
    finally:
        engine.writer.close()


def test_inline_params_are_in_the_journal_once_not_in_its_checkpoints(tmp_path: Path) -> None:
    """An ensemble's params given as a list live in its Opened record; neither the readers'
    checkpoint file nor a compaction's head copies them (they name the record by its crc)."""
    from corral.supervisor.compaction import Compactor

    records = _records("e1", 20_000, 30)
    opened_size = len(encode(records[0]))
    layout, _ = _journal(tmp_path, records, 60)
    ckpt_size = os.path.getsize(checkpoints.path_of(layout))
    assert opened_size > 50_000 and ckpt_size < 3_000  # it was both: the list twice
    assert _table(checkpoints.fold_journal(layout)) == _table(replay(layout)[0])
    before = os.path.getsize(layout.journal)
    writer, _ = open_for_append(layout.journal, create=False)
    with writer:
        sup, _ = replay(layout)
        Compactor(layout, writer, lambda _point: None).compact(sup, 200.0)
    head = [r for r in replay(layout)[1] if isinstance(r, Compacted)]
    assert head and sum(len(p.data) for p in head) < 3_000
    assert os.path.getsize(layout.journal) < before  # the Opened record once, and a small head
    assert _table(replay(layout)[0]) == _table(sup)
