"""Crash recovery: torn tails are dropped, corruption in the middle is reported untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
from journal_helpers import payloads_of_varied_sizes

from corral.journal import (
    HEADER,
    JournalCorrupt,
    JournalWriter,
    iter_raw,
    open_for_append,
    read_journal,
)
from corral.journal.frame import FRAME_OVERHEAD


def write_journal(path: Path, payloads: list[bytes]) -> list[int]:
    """Write `payloads` in a few commits; return the file offset where each frame ends."""
    with JournalWriter.open(path, create=True) as writer:
        for i, payload in enumerate(payloads):
            writer.append(payload)
            if i % 7 == 0:
                writer.commit()
    ends, pos = [], len(HEADER)
    for payload in payloads:
        pos += FRAME_OVERHEAD + len(payload)
        ends.append(pos)
    return ends


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[bytes], list[int]]:
    path = tmp_path_factory.mktemp("ref") / "journal.bin"
    payloads = payloads_of_varied_sizes(50)
    ends = write_journal(path, payloads)
    return path.read_bytes(), payloads, ends


def longest_prefix(payloads: list[bytes], ends: list[int], cut: int) -> list[bytes]:
    return [p for p, end in zip(payloads, ends, strict=True) if end <= cut]


def test_truncation_at_every_offset_reads_longest_valid_prefix(
    tmp_path: Path, reference: tuple[bytes, list[bytes], list[int]]
) -> None:
    data, payloads, ends = reference
    path = tmp_path / "journal.bin"
    for cut in range(len(data) + 1):
        path.write_bytes(data[:cut])
        contents = read_journal(path)
        expected = longest_prefix(payloads, ends, cut)
        assert contents.payloads == expected, cut
        whole = cut in ends or cut in (0, len(HEADER))
        assert contents.torn_tail == (not whole), cut


def test_truncation_at_every_offset_is_repaired_on_open(
    tmp_path: Path, reference: tuple[bytes, list[bytes], list[int]]
) -> None:
    data, payloads, ends = reference
    path = tmp_path / "journal.bin"
    for cut in range(len(data) + 1):
        path.write_bytes(data[:cut])
        writer, existing = open_for_append(path, create=False)
        with writer:
            expected = longest_prefix(payloads, ends, cut)
            assert existing == expected, cut
            if writer.repaired is not None:
                assert writer.repaired.offset + writer.repaired.dropped == cut
            writer.append(b"after crash")
            writer.append(b"and more")
        contents = read_journal(path)
        assert contents.payloads == [*expected, b"after crash", b"and more"], cut
        assert not contents.torn_tail


def test_flipped_byte_in_middle_record_is_reported_and_file_unchanged(
    tmp_path: Path, reference: tuple[bytes, list[bytes], list[int]]
) -> None:
    data, _payloads, ends = reference
    path = tmp_path / "journal.bin"
    victim = 20
    start, end = ends[victim - 1], ends[victim]
    # Every byte of the CRC and the payload, and the high byte of the length.
    for pos in [start + 3, *range(start + 4, end)]:
        damaged = bytearray(data)
        damaged[pos] ^= 0x40
        path.write_bytes(bytes(damaged))
        with pytest.raises(JournalCorrupt) as info:
            read_journal(path)
        assert info.value.offset == start, pos
        with pytest.raises(JournalCorrupt) as info:
            open_for_append(path, create=False)
        assert info.value.offset == start, pos
        assert path.read_bytes() == bytes(damaged)
        # The lock was released: the error leaves nothing held.
        assert not Path(str(path) + ".lock").read_bytes()


def test_corrupt_message_is_one_readable_line(tmp_path: Path) -> None:
    error = JournalCorrupt(tmp_path / "journal.bin", 1234, "crc mismatch")
    assert str(error) == (
        f"{tmp_path / 'journal.bin'}: corrupt record at byte 1234 (crc mismatch); "
        "run 'corral read --raw' to inspect, the records before it are intact"
    )


def test_flipped_byte_in_last_record_is_corruption_not_a_torn_tail(
    tmp_path: Path, reference: tuple[bytes, list[bytes], list[int]]
) -> None:
    # No interrupted append leaves a whole last frame with a wrong byte: it was committed and
    # then damaged, so it is reported and kept, never cut.
    data, _payloads, ends = reference
    path = tmp_path / "journal.bin"
    damaged = bytearray(data)
    damaged[-1] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(JournalCorrupt) as info:
        read_journal(path)
    assert info.value.offset == ends[-2] and "last frame" in info.value.reason
    with pytest.raises(JournalCorrupt):
        open_for_append(path, create=False)
    assert path.read_bytes() == bytes(damaged)


def test_last_record_cut_by_a_crash_is_a_torn_tail(
    tmp_path: Path, reference: tuple[bytes, list[bytes], list[int]]
) -> None:
    data, payloads, ends = reference
    path = tmp_path / "journal.bin"
    path.write_bytes(data[:-1])
    contents = read_journal(path)
    assert contents.torn_tail and contents.payloads == payloads[:-1]
    writer, existing = open_for_append(path, create=False)
    writer.close()
    assert existing == payloads[:-1]
    assert writer.repaired is not None and writer.repaired.offset == ends[-2]
    assert path.stat().st_size == ends[-2]


def test_zero_filled_tail_is_tolerated_and_repaired(
    tmp_path: Path, reference: tuple[bytes, list[bytes], list[int]]
) -> None:
    data, payloads, _ends = reference
    path = tmp_path / "journal.bin"
    path.write_bytes(data + bytes(8192))
    assert read_journal(path).payloads == payloads
    writer, _ = open_for_append(path, create=False)
    with writer:
        assert writer.repaired is not None and writer.repaired.dropped == 8192
        writer.append(b"next")
    assert read_journal(path).payloads == [*payloads, b"next"]


def test_bad_magic_is_reported_at_byte_zero(tmp_path: Path) -> None:
    path = tmp_path / "journal.bin"
    original = b"#!/bin/sh\necho not a journal\n"
    path.write_bytes(original)
    with pytest.raises(JournalCorrupt) as info:
        read_journal(path)
    assert info.value.offset == 0 and "magic" in info.value.reason
    assert "corrupt header at byte 0" in str(info.value)
    with pytest.raises(JournalCorrupt):
        open_for_append(path, create=True)
    assert path.read_bytes() == original


def test_empty_file_gets_a_header_on_open(tmp_path: Path) -> None:
    path = tmp_path / "journal.bin"
    path.write_bytes(b"")
    assert read_journal(path).payloads == []
    writer, existing = open_for_append(path, create=False)
    writer.close()
    assert existing == [] and writer.repaired is None
    assert path.read_bytes() == HEADER


def test_iter_raw_shows_bad_frames(tmp_path: Path, reference: tuple[bytes, list[bytes], list[int]]) -> None:
    data, payloads, ends = reference
    path = tmp_path / "journal.bin"
    damaged = bytearray(data)
    damaged[ends[9] + 10] ^= 1  # inside record 10's payload
    path.write_bytes(bytes(damaged) + b"\x01\x00")
    frames = list(iter_raw(path))
    assert [f.offset for f in frames[:50]] == [len(HEADER), *ends[:-1]]
    assert [f.crc_ok for f in frames[:50]] == [i != 10 for i in range(50)]
    assert frames[0].payload == payloads[0]
    assert frames[-1].offset == ends[-1] and not frames[-1].crc_ok
