"""Compaction: folding a compacted journal gives the fold of the original, at any cut, however
many times it was compacted and however many parts its checkpoint takes; every reader (replay,
fold_journal, a Follower, the observer's folds) accepts it; a bad head is one line."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parents[1] / "core"))  # the simulated tasks of tests/core

from test_properties import SETTINGS, dump, requests, task_sim, tasks

from corral.core.checkpoint import capture, encode_checkpoint, joined, split
from corral.core.records import Compacted, Opened, Record, RunUpdate, Transition, encode
from corral.core.task import KEPT_RUNS
from corral.journal import RecordRejected, open_for_append
from corral.journal import compact as journal_compact
from corral.observe.folds import Folds
from corral.spec.model import Process, Task
from corral.supervisor.checkpoints import fold_journal
from corral.supervisor.compaction import Compactor, segments
from corral.supervisor.follow import Follower
from corral.supervisor.layout import Layout
from corral.supervisor.session import replay


def _opened(task: Task, keep_history: bool = False) -> Opened:
    spec = msgspec.to_builtins(task)
    if keep_history:
        spec["journal"] = {"keep_history": True}
    return Opened("task", "t", spec, 0.0, "h", "b")


def _write(layout: Layout, records: list[Record]) -> None:
    layout.dir.mkdir(parents=True, exist_ok=True)
    writer, _ = open_for_append(layout.journal, create=True)
    with writer:
        writer.append_many(encode(r) for r in records)


def _compacted(layout: Layout, records: list[Record], cuts: list[int], part: int) -> int:
    """The journal of `records`, compacted by a Compactor after each cut; how many times."""
    layout.dir.mkdir(parents=True, exist_ok=True)
    writer, _ = open_for_append(layout.journal, create=True)
    compactor = Compactor(layout, writer, lambda _point: None, part=part)
    done = 0
    with writer:
        for k in [*cuts, len(records)]:
            writer.append_many(encode(r) for r in records[done:k])
            writer.commit()
            done = k
            if k < len(records):
                sup, _ = replay(layout)  # what the supervisor holds: the fold of every commit
                compactor.compact(sup, 1.0 + k)
    return compactor.count


def _same(sup: Any, original: Any) -> None:
    assert dump(sup) == dump(original)


@SETTINGS
@given(
    tasks(),
    requests(),
    st.lists(st.integers(1, 400), min_size=1, max_size=3),
    st.sampled_from([1 << 20, 200, 16]),
)
def test_folding_the_compacted_journal_gives_the_original_fold(
    tmp_path_factory: pytest.TempPathFactory, spec: Any, reqs: Any, cuts: list[int], part: int
) -> None:
    task, behaviours = spec
    sim = task_sim(task, behaviours, reqs)
    sim.run()
    records: list[Record] = [_opened(task), *sim.records]  # type: ignore[attr-defined]
    cuts = sorted({min(c, len(records)) for c in cuts})
    base = tmp_path_factory.mktemp("c")
    original, compacted = Layout(base, "orig"), Layout(base, "comp")
    _write(original, records)
    times = _compacted(compacted, records, cuts, part)
    whole, _ = replay(original)
    folded, replayed = replay(compacted)
    _same(folded, whole)
    _same(fold_journal(compacted), whole)
    with Follower(compacted) as follower:
        _same(follower.refresh(), whole)
    _same(Folds(base).get("comp").sup, whole)
    if times:
        head = [r for r in replayed if isinstance(r, Compacted)]
        last = max(c for c in cuts if c < len(records))
        assert head and head[0].records == last - 1  # every record but Opened before the last cut
        assert folded.compacted == head[0].records
        # the next decision is the same as from the whole history
        now = records[-1].at if hasattr(records[-1], "at") else 0.0
        assert folded.decide(now).records == whole.decide(now).records


def _task() -> Task:
    return Task("t", (Process("p", cmd="true", daemon=True, max_failures=0),))


def _daemon_runs(n: int, first: int = 0) -> list[Record]:
    out: list[Record] = []
    for run in range(first, first + n):
        at = 10.0 + run
        out += [
            RunUpdate(0, "p", run, "LAUNCHING", at),
            RunUpdate(0, "p", run, "RUNNING", at, pid=100 + run),
            RunUpdate(0, "p", run, "SUCCESS", at + 0.5, exit_code=0),
        ]
    return out


def _daemon_journal(n: int) -> list[Record]:
    return [_opened(_task()), Transition(0, "ACTIVE", 1.0), *_daemon_runs(n)]


def test_a_process_keeps_a_bounded_history_of_runs_and_counts_the_rest(tmp_path: Path) -> None:
    layout = Layout(tmp_path, "t")
    _write(layout, _daemon_journal(KEPT_RUNS * 3))
    sup, _ = replay(layout)
    p = sup.jobs[0].processes["p"]
    assert len(p.runs) == KEPT_RUNS
    assert p.dropped == KEPT_RUNS * 2
    assert p.runs[0].run == KEPT_RUNS * 2 and p.runs[-1].run == KEPT_RUNS * 3 - 1


def test_a_checkpoint_larger_than_a_frame_is_split_and_read_as_one(tmp_path: Path) -> None:
    records = _daemon_journal(KEPT_RUNS)
    layout = Layout(tmp_path, "t")
    assert _compacted(layout, records, [len(records) - 3], part=64) == 1
    _, replayed = replay(layout)
    parts = [r for r in replayed if isinstance(r, Compacted)]
    assert len(parts) > 10 and [p.part for p in parts] == list(range(len(parts)))
    whole = Layout(tmp_path, "w")
    _write(whole, records)
    _same(replay(layout)[0], replay(whole)[0])


def test_parts_missing_or_out_of_order_are_refused() -> None:
    sup, _ = _fold_of(_daemon_journal(5))
    parts = split(capture(sup, 17, 2.0), 32)
    assert encode_checkpoint(joined(parts)) == encode_checkpoint(capture(sup, 17, 2.0))
    for bad in (parts[1:], parts[:-1], [parts[1], parts[0], *parts[2:]], []):
        with pytest.raises(ValueError):
            joined(bad)
    other = Compacted(0, len(parts), 18, 2.0, parts[0].data)
    with pytest.raises(ValueError):
        joined([other, *parts[1:]])


def _fold_of(records: list[Record]) -> Any:
    from corral.supervisor.folding import supervision_for

    assert isinstance(records[0], Opened)
    sup, jobs = supervision_for(records[0], Layout(Path("/nonexistent"), "t"), True)
    for rec in records:
        sup.apply(rec)
    return sup, jobs


@pytest.mark.parametrize("damage", ["part missing", "part past the head", "garbage part"])
def test_a_bad_checkpoint_head_is_one_line_naming_its_offset(tmp_path: Path, damage: str) -> None:
    records = _daemon_journal(20)
    sup, _ = _fold_of(records)
    parts: list[Record] = list(split(capture(sup, len(records) - 1, 30.0), 64))
    if damage == "part missing":
        del parts[1]
    elif damage == "garbage part":
        parts[0] = Compacted(0, len(parts), len(records) - 1, 30.0, b"\xc1" * 64)
    head: list[Record] = [records[0], *parts]
    if damage == "part past the head":
        head = [*records, parts[0]]
    layout = Layout(tmp_path, "t")
    _write(layout, head)
    with pytest.raises(RecordRejected) as err:
        replay(layout)
    assert "\n" not in str(err.value) and "at byte" in str(err.value)


def test_a_follower_on_the_old_file_finishes_it_then_reads_the_new_one(tmp_path: Path) -> None:
    layout = Layout(tmp_path, "t")
    records = _daemon_journal(150)
    layout.dir.mkdir()
    writer, _ = open_for_append(layout.journal, create=True)
    compactor = Compactor(layout, writer, lambda _point: None)
    with writer, Follower(layout) as follower:
        writer.append_many(encode(r) for r in records[:200])
        writer.commit()
        assert follower.refresh().jobs[0].processes["p"].runs[-1].run == 65
        inode = writer.inode
        writer.append_many(encode(r) for r in records[200:300])  # unseen by the follower yet
        writer.commit()
        compactor.compact(replay(layout)[0], 99.0)
        assert writer.inode != inode
        writer.append_many(encode(r) for r in records[300:])
        writer.commit()
        seen = follower.refresh()
        assert follower.tail.restarted
    whole = Layout(tmp_path, "w")
    _write(whole, records)
    _same(seen, replay(whole)[0])
    assert segments(layout) == []


def test_keep_history_keeps_the_old_journals(tmp_path: Path) -> None:
    records = [_opened(_task(), keep_history=True), *_daemon_journal(60)[1:]]
    layout = Layout(tmp_path, "t")
    assert _compacted(layout, records, [50, 120], part=1 << 20) == 2
    kept = segments(layout)
    assert len(kept) == 2
    old = Layout(tmp_path, "old")
    old.dir.mkdir()
    shutil.copy(kept[0], old.journal)  # the first segment is the history up to the first cut
    first, _ = replay(old)
    assert (
        first.jobs[0].processes["p"].runs[-1].run
        == _fold_of(records[:50])[0].jobs[0].processes["p"].runs[-1].run
    )


def test_a_crash_before_the_rename_leaves_the_old_journal_and_a_leftover_the_writer_drops(
    tmp_path: Path,
) -> None:
    layout = Layout(tmp_path, "t")
    records = _daemon_journal(30)
    _write(layout, records)
    before = layout.journal.read_bytes()

    class Crash(Exception):
        pass

    def hook(point: str) -> None:
        if point == "compact-synced":
            raise Crash

    with pytest.raises(Crash):
        journal_compact.replace(layout.journal, [encode(records[0])], hook=hook)
    assert layout.journal.read_bytes() == before
    assert Path(journal_compact.leftover(layout.journal)).exists()
    writer, payloads = open_for_append(layout.journal, create=False)
    writer.close()
    assert len(payloads) == len(records)
    assert not Path(journal_compact.leftover(layout.journal)).exists()


def test_a_new_supervisor_knows_the_head_of_a_compacted_journal(tmp_path: Path) -> None:
    layout = Layout(tmp_path, "t")
    records = _daemon_journal(40)
    _compacted(layout, records, [60], part=64)
    writer, _ = open_for_append(layout.journal, create=False)
    with writer:
        compactor = Compactor(layout, writer, lambda _point: None, part=64)
        head = 1 + sum(1 for r in replay(layout)[1] if isinstance(r, Compacted))
        assert head > 3
        sup, _ = replay(layout)
        compactor.compact(sup, 50.0)  # the records after the head are counted, not the head
        assert sup.compacted == 59 + (len(records) - 60)
    assert replay(layout)[0].compacted == len(records) - 1
