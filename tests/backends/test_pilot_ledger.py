"""backends/pilot_ledger.py: a gone worker's ends read back from its ledger, safely.

Whatever the file holds (garbage, a torn tail, huge lines, ends of jobs the worker never held,
duplicates, a fifo, a symlink), reading it never raises: it yields ends only of jobs held at
that attempt, and counts what it ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.backends import pilot_ledger
from corral.backends.pilot_ledger import append_ends, read_ends
from corral.backends.pilot_wire import MAX_LINE, End, encode


def end(job: int, attempt: int = 0, state: str = "SUCCESS", code: int | None = 0, seq: int = 1) -> End:
    return End(seq=seq, job=job, attempt=attempt, at=1000.0 + job, state=state, exit_code=code)


def test_ends_appended_are_read_back_for_held_jobs(tmp_path: Path) -> None:
    path = tmp_path / "ends"
    append_ends(path, [end(1), end(2, state="FAILED", code=3)])
    append_ends(path, [end(3, attempt=1)])
    found = read_ends(path, {1: 0, 2: 0, 3: 1})
    assert found.ends == [end(1), end(2, state="FAILED", code=3), end(3, attempt=1)]
    assert (found.garbage, found.stale) == (0, 0)
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


def test_ends_of_jobs_not_held_at_that_attempt_are_ignored_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "ends"
    append_ends(path, [end(1), end(2, attempt=0), end(7), end(1, seq=2)])
    found = read_ends(path, {1: 0, 2: 1})  # job 2 is at attempt 1, job 7 was never held
    assert found.ends == [end(1, seq=2)]  # the last end of a job counts
    assert found.stale == 3 and found.garbage == 0


def test_garbage_and_a_torn_tail_are_ignored_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "ends"
    good = encode(end(1))
    path.write_bytes(
        b"not json\n"
        + b'{"m":"start","seq":1,"job":1,"attempt":0,"at":1.0}\n'  # not an end
        + b'{"m":"end","seq":1,"job":2,"attempt":0,"at":-5,"state":"SUCCESS"}\n'  # out of range
        + b'{"m":"end","seq":1,"job":3,"attempt":0,"at":1,"state":"DONE"}\n'  # no such state
        + b"\xff\xfe\x00\n"
        + good
        + encode(end(2))[:-9]  # torn: the worker died writing it
    )
    found = read_ends(path, {1: 0, 2: 0, 3: 0})
    assert found.ends == [end(1)]
    assert found.garbage == 6 and found.stale == 0


def test_a_missing_file_a_fifo_or_a_symlink_reads_as_nothing(tmp_path: Path) -> None:
    assert read_ends(tmp_path / "none", {1: 0}).ends == []
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert read_ends(fifo, {1: 0}).ends == []  # does not block
    real = tmp_path / "real"
    append_ends(real, [end(1)])
    link = tmp_path / "link"
    link.symlink_to(real)
    assert read_ends(link, {1: 0}).ends == []
    append_ends(link, [end(2)])  # nor does the worker write through a symlink
    assert read_ends(real, {1: 0, 2: 0}).ends == [end(1)]


def test_a_huge_ledger_is_read_from_its_end_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(pilot_ledger, "MAX_READ", 4096)
    path = tmp_path / "ends"
    append_ends(path, [end(j) for j in range(200)])
    found = read_ends(path, {0: 0, 199: 0})
    assert found.ends == [end(199)]  # job 0's end is out of the window: its job will be LOST
    assert found.garbage == 1  # the line the window cut


def test_a_line_longer_than_a_message_is_garbage(tmp_path: Path) -> None:
    path = tmp_path / "ends"
    path.write_bytes(b'{"m":"end","reason":"' + b"x" * (MAX_LINE + 10) + b'"}\n' + encode(end(1)))
    found = read_ends(path, {1: 0})
    assert found.ends == [end(1)] and found.garbage == 1


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=2000), held=st.dictionaries(st.integers(0, 5), st.integers(0, 2)))
def test_any_bytes_give_only_ends_of_held_jobs(tmp_path_factory, data: bytes, held: dict[int, int]) -> None:
    path = tmp_path_factory.mktemp("l") / "ends"
    path.write_bytes(data + encode(end(1)) + data)
    found = read_ends(path, held)
    assert all(held.get(e.job) == e.attempt for e in found.ends)
    assert len({e.job for e in found.ends}) == len(found.ends)
    if held.get(1) == 0 and b"\n" not in data and not data:
        assert found.ends == [end(1)]
