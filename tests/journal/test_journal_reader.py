from __future__ import annotations

import threading
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from journal_helpers import spawn_python

from corral.journal import JournalWriter, encode_frame, follow, read_journal

APPEND_SLOWLY = """
import sys, time
from corral.journal import JournalWriter
with JournalWriter.open(sys.argv[1], create=True) as w:
    for batch in range(5):
        w.append_many([b"batch %d record %d" % (batch, i) for i in range(batch + 1)])
        w.commit()
        time.sleep(0.05)
"""


def collect(path: Path, want: int, timeout: float = 10.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    for payload in follow(path, poll=0.01, stop=lambda: len(got) >= want or time.monotonic() > deadline):
        got.append(payload)
    return got


def test_follow_sees_records_appended_by_another_process(journal_path: Path) -> None:
    # Started before the journal exists: follow waits for it to appear.
    child = spawn_python(APPEND_SLOWLY, str(journal_path))
    got = collect(journal_path, want=15)
    child.communicate("")
    assert child.returncode == 0
    expected = [b"batch %d record %d" % (b, i) for b in range(5) for i in range(b + 1)]
    assert got == expected


def test_follow_waits_for_a_frame_being_written(journal_path: Path) -> None:
    with JournalWriter.open(journal_path, create=True) as writer:
        writer.append(b"first")
    frame = encode_frame(b"second, written in two halves")

    def write_slowly() -> None:
        time.sleep(0.1)
        with open(journal_path, "ab") as f:
            f.write(frame[:10])
            f.flush()
            time.sleep(0.2)
            f.write(frame[10:])

    thread = threading.Thread(target=write_slowly)
    thread.start()
    got = collect(journal_path, want=2)
    thread.join()
    assert got == [b"first", b"second, written in two halves"]


def test_follow_drains_before_stopping(journal_path: Path) -> None:
    with JournalWriter.open(journal_path, create=True) as writer:
        writer.append_many([b"a", b"b", b"c"])
    assert list(follow(journal_path, stop=lambda: True)) == [b"a", b"b", b"c"]


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.binary(min_size=1, max_size=300), max_size=20), min_size=1, max_size=10))
def test_any_payloads_round_trip(tmp_path: Path, batches: list[list[bytes]]) -> None:
    path = tmp_path / "prop.bin"
    path.unlink(missing_ok=True)
    with JournalWriter.open(path, create=True) as writer:
        for batch in batches:
            writer.append_many(batch)
            writer.commit()
    expected = [p for batch in batches for p in batch]
    contents = read_journal(path)
    assert contents.payloads == expected
    assert not contents.torn_tail
    assert list(follow(path, stop=lambda: True)) == expected


def test_first_payload_reads_only_a_whole_valid_first_frame(tmp_path: Path) -> None:
    import os

    from test_journal_legacy import v1_journal

    from corral.journal import first_payload
    from corral.journal.frame import HEADER

    def first(data: bytes) -> bytes | None:
        path = tmp_path / "j"
        path.write_bytes(data)
        fd = os.open(path, os.O_RDONLY)
        try:
            return first_payload(fd)
        finally:
            os.close(fd)

    frames = encode_frame(b"opened" * 50) + encode_frame(b"next")
    assert first(HEADER + frames) == b"opened" * 50
    assert first(v1_journal([b"old", b"next"])) == b"old"
    assert first(HEADER + frames[:40]) is None  # torn
    flipped = bytearray(HEADER + frames)
    flipped[30] ^= 1
    assert first(bytes(flipped)) is None  # its crc
    assert first(b"") is None and first(HEADER) is None and first(b"garbage" * 10) is None
    assert first(HEADER + b"\xff\xff\xff\x7f" + bytes(8)) is None  # a length past any frame
