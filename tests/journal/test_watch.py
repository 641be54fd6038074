"""Readers that wait: the incremental Tail and the FileWatch that wakes them."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from journal_helpers import spawn_python

from corral.journal import JournalCorrupt, JournalWriter
from corral.journal.frame import HEADER, encode_frame
from corral.journal.watch import FileWatch, Tail

HOLD_AND_APPEND = """
import sys
from corral.journal import JournalWriter
w = JournalWriter.open(sys.argv[1], create=True)
for line in sys.stdin:
    w.append(line.strip().encode()); w.commit()
    print("ok", flush=True)
"""


def test_tail_returns_only_what_was_committed_since_its_last_read(journal_path: Path) -> None:
    with JournalWriter.open(journal_path, create=True) as w:
        w.append_many([b"a", b"b"])
        w.commit()
        tail = Tail(journal_path)
        assert tail.read_new() == [b"a", b"b"]
        assert tail.read_new() == []
        w.append(b"c")
        w.commit()
        assert tail.read_new() == [b"c"]
        assert tail.offset == os.path.getsize(journal_path)
    tail.close()


def test_tail_waits_for_a_frame_being_written(journal_path: Path) -> None:
    frame = encode_frame(b"whole record")
    journal_path.write_bytes(HEADER + frame[:5])
    tail = Tail(journal_path)
    assert tail.read_new() == []
    with open(journal_path, "ab") as f:
        f.write(frame[5:])
    assert tail.read_new() == [b"whole record"]
    tail.close()


def test_tail_refuses_corruption_with_its_offset(journal_path: Path) -> None:
    good = encode_frame(b"good")
    bad = bytearray(encode_frame(b"bad!"))
    bad[-1] ^= 0xFF
    journal_path.write_bytes(HEADER + good + bytes(bad) + encode_frame(b"after"))
    tail = Tail(journal_path)
    with pytest.raises(JournalCorrupt) as err:
        tail.read_new()
    assert err.value.offset == len(HEADER) + len(good)
    tail.close()


def test_tail_finishes_a_replaced_file_then_starts_on_the_new_one(journal_path: Path) -> None:
    journal_path.write_bytes(HEADER + encode_frame(b"old 1"))
    tail = Tail(journal_path)
    assert tail.read_new() == [b"old 1"]
    with open(journal_path, "ab") as f:  # committed to the old file before the replace
        f.write(encode_frame(b"old 2"))
    fresh = journal_path.with_name("new")
    fresh.write_bytes(HEADER + encode_frame(b"checkpoint") + encode_frame(b"new 1"))
    os.replace(fresh, journal_path)
    assert tail.read_new() == [b"checkpoint", b"new 1"]  # old 2 read first, then dropped: a restart
    assert tail.restarted
    assert tail.read_new() == [] and not tail.restarted
    tail.close()


@pytest.mark.parametrize("inotify", [True, False])
def test_filewatch_wakes_on_a_commit_by_another_process(
    journal_path: Path, inotify: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not inotify:
        monkeypatch.setenv("CORRAL_NO_INOTIFY", "1")
    child = spawn_python(HOLD_AND_APPEND, str(journal_path))
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("first\n")
    child.stdin.flush()
    assert child.stdout.readline() == "ok\n"
    watch = FileWatch(journal_path.parent, [journal_path.name], poll=0.05)
    assert watch.inotify is inotify
    tail = Tail(journal_path)
    assert tail.read_new() == [b"first"]
    assert watch.wait(0.2) is False  # nothing happens: a timeout, not a wake-up
    child.stdin.write("second\n")
    child.stdin.flush()
    assert child.stdout.readline() == "ok\n"
    assert watch.wait(30) is True
    assert tail.read_new() == [b"second"]
    child.stdin.close()
    child.wait(timeout=30)
    watch.close()
    tail.close()


def test_filewatch_wakes_when_a_writer_is_killed(journal_path: Path) -> None:
    child = spawn_python(HOLD_AND_APPEND, str(journal_path))
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("x\n")
    child.stdin.flush()
    assert child.stdout.readline() == "ok\n"
    watch = FileWatch(journal_path.parent, [journal_path.name, journal_path.name + ".lock"])
    if not watch.inotify:
        pytest.skip("no inotify here")
    child.send_signal(signal.SIGKILL)
    started = time.monotonic()
    assert watch.wait(30) is True  # the kernel closed its files: IN_CLOSE_WRITE
    assert time.monotonic() - started < 30
    child.wait(timeout=30)
    watch.close()


def test_tail_can_start_at_a_frame_boundary(journal_path: Path) -> None:
    with JournalWriter.open(journal_path, create=True) as w:
        w.append_many([b"a", b"b"])
        w.commit()
        middle = w.size
        w.append_many([b"c", b"d"])
        w.commit()
    tail = Tail(journal_path, offset=middle)
    assert tail.read_new() == [b"c", b"d"]
    tail.close()
    journal_path.write_bytes(b"NOTAJOURNAL!" + b"\0" * 40)
    with pytest.raises(JournalCorrupt):
        Tail(journal_path, offset=middle).read_new()
