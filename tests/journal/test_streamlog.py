"""Streamed output (journal/streamlog.py): many runs' logs in one data file plus an index."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.journal.frame import FRAME_OVERHEAD, encode_frame
from corral.journal.streamlog import (
    HEADER,
    Stream,
    StreamKey,
    StreamLogError,
    StreamLogReader,
    StreamLogWriter,
    data_path,
    index_path,
)

OUT, ERR = Stream.STDOUT, Stream.STDERR
KEYS = [StreamKey(j, 0, p, r, s) for j in (0, 7) for p in ("main", "a.b") for r in (0, 1) for s in (OUT, ERR)]


def everything(reader: StreamLogReader) -> dict[StreamKey, bytes]:
    return {k: reader.read(k) for k in reader.logs()}


def test_interleaved_runs_read_back_per_key(tmp_path: Path) -> None:
    base = tmp_path / "w0"
    with StreamLogWriter(base) as w:
        w.append(StreamKey(3, 0, "main", 0, OUT), b"hello ")
        w.append(StreamKey(3, 0, "main", 0, ERR), b"oops\n")
        w.append(StreamKey(4, 0, "main", 0, OUT), b"other job\n")
        w.flush()
        w.append(StreamKey(3, 0, "main", 0, OUT), b"world\n")
        w.append(StreamKey(3, 0, "main", 1, OUT), b"second run\n")
    r = StreamLogReader(base)
    assert r.read(StreamKey(3, 0, "main", 0, OUT)) == b"hello world\n"
    assert r.read(StreamKey(3, 0, "main", 0, ERR)) == b"oops\n"
    assert r.read(StreamKey(4, 0, "main", 0, OUT)) == b"other job\n"
    assert r.latest(3, None, OUT) == StreamKey(3, 0, "main", 1, OUT)
    assert r.latest(3, "main", ERR) == StreamKey(3, 0, "main", 0, ERR)
    assert r.latest(9, None, OUT) is None
    assert r.read(StreamKey(3, 0, "main", 0, OUT), 3, 5) == b"lo wo"
    assert r.size(StreamKey(3, 0, "main", 0, OUT)) == 12
    assert r.damage is None
    # one index record per key and flush, not per chunk: 3 keys, then 2
    assert len(index_path(base).read_bytes()) > len(HEADER)
    assert r.index_pos == len(index_path(base).read_bytes())


def test_attempts_of_a_job_stay_apart_and_the_latest_wins(tmp_path: Path) -> None:
    base = tmp_path / "w"
    with StreamLogWriter(base) as w:
        w.append(StreamKey(5, 0, "main", 0, OUT), b"first attempt\n")
        w.append(StreamKey(5, 1, "main", 0, OUT), b"retried\n")
        w.append(StreamKey(5, 0, "main", 3, OUT), b"old run 3\n")
    r = StreamLogReader(base)
    assert r.latest(5, "main", OUT) == StreamKey(5, 1, "main", 0, OUT)
    assert r.read(StreamKey(5, 0, "main", 0, OUT)) == b"first attempt\n"


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.sampled_from(KEYS), st.binary(min_size=0, max_size=300)),
            st.just("flush"),
        ),
        max_size=60,
    ),
    reads=st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 5000)), max_size=10),
)
def test_any_appends_and_flushes_read_back_as_written(tmp_path_factory, ops, reads) -> None:  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("s") / "w"
    model: dict[StreamKey, bytes] = {}
    reader = None
    with StreamLogWriter(base, flush_bytes=700) as w:
        for op in ops:
            if op == "flush":
                w.flush()
                reader = reader or StreamLogReader(base)
                reader.refresh()
                # a follower sees a prefix of each key's log, never anything else
                for k in reader.logs():
                    assert model[k].startswith(reader.read(k))
                continue
            key, data = op
            w.append(key, data)
            if data:
                model[key] = model.get(key, b"") + data
    r = StreamLogReader(base)
    assert everything(r) == model
    if reader is not None:
        reader.refresh()
        assert everything(reader) == model
    for key in model:
        for offset, limit in reads:
            assert r.read(key, offset, limit) == model[key][offset : offset + limit]


def test_every_torn_index_serves_a_prefix_and_reopens(tmp_path: Path) -> None:
    base = tmp_path / "w"
    model: dict[StreamKey, bytes] = {}
    with StreamLogWriter(base) as w:
        for i in range(12):
            key = KEYS[i % 5]
            data = f"line {i}\n".encode() * (i + 1)
            w.append(key, data)
            model[key] = model.get(key, b"") + data
            w.flush()
    whole = index_path(base).read_bytes()
    for cut in range(len(whole) + 1):
        index_path(base).write_bytes(whole[:cut])
        r = StreamLogReader(base)
        assert r.damage is None, cut
        for k in r.logs():
            assert model[k].startswith(r.read(k))
        # the writer cuts the torn record and goes on; what it appends is read after the rest
        with StreamLogWriter(base) as w:
            w.append(KEYS[0], b"after\n")
        r = StreamLogReader(base)
        assert r.read(KEYS[0]).endswith(b"after\n")
        assert model[KEYS[0]].startswith(r.read(KEYS[0])[: -len(b"after\n")])
        assert r.damage is None


def test_a_record_whose_data_is_not_there_yet_waits(tmp_path: Path) -> None:
    base = tmp_path / "w"
    with StreamLogWriter(base) as w:
        w.append(KEYS[0], b"first\n")
        w.flush()
        w.append(KEYS[1], b"second\n")
    data = data_path(base).read_bytes()
    os.truncate(data_path(base), len(b"first\n") + 2)  # as if the data had not reached this host
    r = StreamLogReader(base)
    assert r.read(KEYS[0]) == b"first\n"
    assert r.logs() == [KEYS[0]]
    data_path(base).write_bytes(data)
    assert r.refresh()
    assert r.read(KEYS[1]) == b"second\n"


def test_damaged_index_serves_what_is_before_and_refuses_the_writer(tmp_path: Path) -> None:
    base = tmp_path / "w"
    with StreamLogWriter(base) as w:
        for i, key in enumerate(KEYS[:4]):
            w.append(key, b"x" * (i + 1))
            w.flush()
    raw = bytearray(index_path(base).read_bytes())
    second = len(HEADER) + (len(raw) - len(HEADER)) // 4  # frames are the same size here
    raw[second + FRAME_OVERHEAD + 2] ^= 0xFF  # a flipped bit inside the second record
    index_path(base).write_bytes(bytes(raw))
    r = StreamLogReader(base)
    assert r.logs() == [KEYS[0]]
    assert r.damage is not None and "damaged" in r.damage
    assert not r.refresh()
    with pytest.raises(StreamLogError, match="damaged"):
        StreamLogWriter(base)
    assert index_path(base).read_bytes() == bytes(raw)  # nothing repaired behind anyone's back


@pytest.mark.parametrize(
    "payload",
    [
        b"short",  # shorter than a record
        b"\x00" * 24 + b"\x01" + b"\xff\xfe",  # a process name that is not utf-8
        b"\x00" * 24 + b"\x07" + b"main",  # stream 7
    ],
)
def test_checksummed_garbage_record_is_damage_not_a_crash(tmp_path: Path, payload: bytes) -> None:
    base = tmp_path / "w"
    with StreamLogWriter(base) as w:
        w.append(KEYS[0], b"ok\n")
    with open(index_path(base), "ab") as f:
        f.write(encode_frame(payload))
    r = StreamLogReader(base)
    assert r.read(KEYS[0]) == b"ok\n"
    assert r.damage is not None and "bad index record" in r.damage


@settings(max_examples=80, deadline=None)
@given(garbage=st.binary(min_size=1, max_size=400))
def test_garbage_index_never_crashes_a_reader(tmp_path_factory, garbage: bytes) -> None:  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("g") / "w"
    data_path(base).write_bytes(b"d" * 1000)
    index_path(base).write_bytes(garbage)
    r = StreamLogReader(base)
    for k in r.logs():
        r.read(k)
    index_path(base).write_bytes(HEADER + garbage)
    r = StreamLogReader(base)
    for k in r.logs():
        assert len(r.read(k)) == r.size(k)


def test_garbage_index_refuses_the_writer(tmp_path: Path) -> None:
    base = tmp_path / "w"
    index_path(base).write_bytes(b"this is not an index at all")
    with pytest.raises(StreamLogError, match="bad header"):
        StreamLogWriter(base)
    assert index_path(base).read_bytes() == b"this is not an index at all"


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    base = tmp_path / "w"
    with StreamLogWriter(base), pytest.raises(StreamLogError, match="another writer"):
        StreamLogWriter(base)
    with StreamLogWriter(base) as w:  # released on close
        w.append(KEYS[0], b"x")


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with StreamLogWriter(tmp_path / "w") as w:
        with pytest.raises(ValueError, match="process name"):
            w.append(StreamKey(0, 0, "", 0, OUT), b"x")
        with pytest.raises(ValueError, match="process name"):
            w.append(StreamKey(0, 0, "p" * (2 << 20), 0, OUT), b"x")
        w.append(KEYS[0], b"abc")
    r = StreamLogReader(tmp_path / "w")
    with pytest.raises(ValueError, match="offset"):
        r.read(KEYS[0], -1)
    assert r.read(KEYS[0], 10) == b""
    assert r.read(StreamKey(5, 0, "none", 0, OUT)) == b""
    assert StreamLogReader(tmp_path / "missing").logs() == []


def test_huge_output_in_many_chunks_and_one_big_append(tmp_path: Path) -> None:
    base = tmp_path / "w"
    rng = random.Random(14)
    big = StreamKey(1, 0, "main", 0, OUT)
    digest = hashlib.sha256()
    total = 0
    with StreamLogWriter(base) as w:
        for i in range(48):
            chunk = rng.randbytes(1 << 20)
            w.append(big, chunk)
            w.append(StreamKey(2, 0, "main", 0, ERR), f"tick {i}\n".encode())
            digest.update(chunk)
            total += len(chunk)
        one = rng.randbytes(5 << 20)  # larger than a flush: written at once
        w.append(big, one)
        digest.update(one)
        total += len(one)
    r = StreamLogReader(base)
    assert r.size(big) == total
    got = hashlib.sha256()
    for offset in range(0, total, 3 << 20):
        got.update(r.read(big, offset, 3 << 20))
    assert got.hexdigest() == digest.hexdigest()
    assert r.read(StreamKey(2, 0, "main", 0, ERR)).count(b"tick") == 48
    # a range across records and a tail read
    assert len(r.read(big, (1 << 20) - 10, 20)) == 20
    assert r.read(big, total - 7) == one[-7:]


WRITER = """
import sys
from pathlib import Path
from corral.journal.streamlog import Stream, StreamKey, StreamLogWriter
base, rounds = Path(sys.argv[1]), int(sys.argv[2])
with StreamLogWriter(base, flush_bytes=4096) as w:
    for i in range(rounds):
        for job in range(3):
            w.append(StreamKey(job, 0, "main", 0, Stream.STDOUT), b"%d:%06d\\n" % (job, i))
        if i % 7 == 0:
            w.flush()
"""


def expected(job: int, rounds: int) -> bytes:
    return b"".join(b"%d:%06d\n" % (job, i) for i in range(rounds))


def test_concurrent_readers_follow_a_writing_process(tmp_path: Path) -> None:
    base, rounds = tmp_path / "w", 20000
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(base), str(rounds)])
    want = {job: expected(job, rounds) for job in range(3)}
    failures: list[str] = []

    def follow() -> None:
        deadline = time.monotonic() + 120
        r = StreamLogReader(base)
        while time.monotonic() < deadline:
            r.refresh()
            for job in range(3):
                key = StreamKey(job, 0, "main", 0, OUT)
                if not want[job].startswith(r.read(key)):
                    failures.append(f"job {job}: not a prefix at {r.size(key)}")
                    return
            if all(r.size(StreamKey(j, 0, "main", 0, OUT)) == len(want[j]) for j in range(3)):
                return
            time.sleep(0.001)  # polling a file that is being written: a short pause between reads
        failures.append("a reader did not see everything before the deadline")

    readers = [threading.Thread(target=follow) for _ in range(3)]
    for t in readers:
        t.start()
    assert writer.wait(timeout=120) == 0
    for t in readers:
        t.join(timeout=150)
    assert failures == []
    assert StreamLogReader(base).damage is None


def test_symlinked_files_are_not_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    with StreamLogWriter(real) as w:
        w.append(KEYS[0], b"secret\n")
    for link in ("index", "data"):
        base = tmp_path / f"via-{link}"
        with StreamLogWriter(base) as w:
            w.append(KEYS[0], b"own\n")
        target = index_path(real) if link == "index" else data_path(real)
        planted = index_path(base) if link == "index" else data_path(base)
        planted.unlink()
        planted.symlink_to(target)
        r = StreamLogReader(base)
        assert r.logs() == [] and r.refused and r.damage is not None and "refused" in r.damage
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert StreamLogReader(Path("real"), dir_fd=dir_fd).read(KEYS[0]) == b"secret\n"
    finally:
        os.close(dir_fd)
