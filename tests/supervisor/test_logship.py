"""Shipping a run's output in chunks (supervisor/logship.py) into one streamed-output file pair
(journal/streamlog.py): real processes writing, resends after a reconnect, gaps, reopen."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from corral.journal.streamlog import Stream, StreamKey, StreamLogReader, StreamLogWriter, data_path
from corral.supervisor.logship import LogShipper

OUT = StreamKey(4, 0, "main", 0, Stream.STDOUT)
ERR = StreamKey(4, 0, "main", 0, Stream.STDERR)


def ship_until_complete(shipper: LogShipper, writer: StreamLogWriter, keys: list[StreamKey]) -> None:
    deadline = time.monotonic() + 120
    while not all(shipper.complete(k) for k in keys):
        assert time.monotonic() < deadline, "the logs were never read to the end"
        for chunk in shipper.collect():
            writer.append_at(chunk.key, chunk.offset, chunk.data)
        writer.flush()


def test_a_writing_process_is_shipped_whole_into_one_file(tmp_path: Path) -> None:
    out, err = tmp_path / "scratch.out", tmp_path / "scratch.err"
    shipper = LogShipper(chunk=4096)
    shipper.watch(OUT, out)
    shipper.watch(ERR, err)
    script = "for i in $(seq 1 5000); do echo line $i; echo err $i >&2; done"
    with open(out, "wb") as o, open(err, "wb") as e, StreamLogWriter(tmp_path / "w") as writer:
        run = subprocess.Popen(["sh", "-c", script], stdout=o, stderr=e)
        while run.poll() is None:  # shipped while the run writes
            for chunk in shipper.collect(budget=8192):
                writer.append_at(chunk.key, chunk.offset, chunk.data)
            writer.flush()
        assert run.returncode == 0
        shipper.ended(OUT)
        shipper.ended(ERR)
        ship_until_complete(shipper, writer, [OUT, ERR])
    reader = StreamLogReader(tmp_path / "w")
    assert reader.read(OUT) == out.read_bytes()
    assert reader.read(ERR) == err.read_bytes()
    assert reader.read(OUT).count(b"\n") == 5000
    shipper.forget(OUT, remove=True)
    assert not out.exists() and not shipper.complete(OUT)


def test_chunks_sent_again_after_a_reconnect_are_dropped(tmp_path: Path) -> None:
    log = tmp_path / "scratch.out"
    log.write_bytes(b"".join(b"%05d\n" % i for i in range(3000)))
    shipper = LogShipper(chunk=1000)
    shipper.watch(OUT, log)
    with StreamLogWriter(tmp_path / "w") as writer:
        first = shipper.collect(budget=5000)
        assert sum(len(c.data) for c in first) == 5000 and len(first) == 5
        for chunk in first[:3]:
            writer.append_at(chunk.key, chunk.offset, chunk.data)
        # the connection dropped: chunks 4 and 5 were lost; the launcher says it has 3000
        shipper.rewind(OUT, writer.size(OUT))
        for chunk in first + shipper.collect():  # old chunks again, then the rest
            writer.append_at(chunk.key, chunk.offset, chunk.data)
    assert StreamLogReader(tmp_path / "w").read(OUT) == log.read_bytes()


def test_a_gap_is_refused_and_the_log_is_unchanged(tmp_path: Path) -> None:
    with StreamLogWriter(tmp_path / "w") as writer:
        writer.append_at(OUT, 0, b"abc")
        with pytest.raises(ValueError, match="resend from 3"):
            writer.append_at(OUT, 10, b"later")
        writer.append_at(OUT, 1, b"bcdef")  # overlaps: only "def" is new
    assert StreamLogReader(tmp_path / "w").read(OUT) == b"abcdef"


def test_a_reopened_writer_knows_each_logs_size(tmp_path: Path) -> None:
    with StreamLogWriter(tmp_path / "w") as writer:
        writer.append_at(OUT, 0, b"first ")
        writer.append_at(ERR, 0, b"e")
    with StreamLogWriter(tmp_path / "w") as writer:
        assert writer.size(OUT) == 6 and writer.size(ERR) == 1
        writer.append_at(OUT, 0, b"first second")
    assert StreamLogReader(tmp_path / "w").read(OUT) == b"first second"


def test_reopen_cuts_records_whose_data_never_reached_the_disk(tmp_path: Path) -> None:
    base = tmp_path / "w"
    with StreamLogWriter(base) as writer:
        writer.append(OUT, b"kept\n")
        writer.flush()
        writer.append(OUT, b"lost in the crash\n")
    os.truncate(data_path(base), len(b"kept\n"))  # a power loss before the data was synced
    with StreamLogWriter(base) as writer:
        assert writer.size(OUT) == 5
        writer.append(OUT, b"after\n")
    reader = StreamLogReader(base)
    assert reader.read(OUT) == b"kept\nafter\n" and reader.damage is None


def test_budget_and_missing_files(tmp_path: Path) -> None:
    shipper = LogShipper(chunk=64)
    shipper.watch(OUT, tmp_path / "not-yet")
    assert shipper.collect() == []
    (tmp_path / "not-yet").write_bytes(b"x" * 1000)
    got = shipper.collect(budget=100)
    assert [len(c.data) for c in got] == [64, 36] and [c.offset for c in got] == [0, 64]
    shipper.ended(OUT)
    assert not shipper.complete(OUT)
    assert sum(len(c.data) for c in shipper.collect()) == 900
    assert shipper.complete(OUT)
    shipper.watch(ERR, tmp_path / "never")
    shipper.ended(ERR)
    assert shipper.complete(ERR)  # the run wrote nothing
