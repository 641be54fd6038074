"""Damage vs torn tail (journal/damage.py) on a real journal written by a real `corral run`.

The properties: any flipped bit or cut byte never raises anything but JournalCorrupt; opening
for append never drops a valid record; only a real torn tail (what an interrupted append can
leave) is ever cut; corruption leaves the file byte for byte as it was.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from journal_helpers import SRC

from corral.journal import HEADER, JournalCorrupt, Stop, encode_frame, iter_raw, open_for_append, scan_journal
from corral.journal.damage import SECTOR, classify, find_frame
from corral.journal.frame import FRAME_OVERHEAD

ENSEMBLE = """
name: sweep
params: {n: {range: [0, 8]}}
job_limit: 3
retries: 1
job:
  processes:
    - {name: work, cmd: "echo {{params.n}}"}
    - {name: check, cmd: "test {{params.n}} -ne 4", after: [work]}
"""


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[bytes], list[int]]:
    """(bytes, payloads, frame offsets) of the journal of a finished 8-job ensemble."""
    base = tmp_path_factory.mktemp("real")
    (base / "sweep.yaml").write_text(ENSEMBLE)
    env = dict(os.environ, PYTHONPATH=SRC)
    argv = [sys.executable, "-m", "corral", "--root", str(base / "root"), "run", str(base / "sweep.yaml")]
    done = subprocess.run([*argv, "--id", "sweep"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr  # job 4 fails on purpose
    data = (base / "root" / "sweep" / "journal").read_bytes()
    result = scan_journal(data)
    assert result.stop is Stop.EOF and len(result.payloads) > 40, result
    return data, result.payloads, result.offsets


def _frame_index(offsets: list[int], size: int, byte: int) -> int:
    """Which frame holds file byte `byte` (-1: the file header)."""
    if byte < len(HEADER):
        return -1
    ends = [*offsets[1:], size]
    return next(i for i, end in enumerate(ends) if byte < end)


def _open(path: Path) -> tuple[list[bytes], int | None] | None:
    """open_for_append's payloads and dropped byte count, or None if it refused (JournalCorrupt)."""
    try:
        writer, payloads = open_for_append(path, create=False)
    except JournalCorrupt:
        return None
    writer.close()
    return payloads, None if writer.repaired is None else writer.repaired.dropped


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_flipped_bit_anywhere_is_never_cut_unless_it_is_in_the_last_frame_and_never_drops_a_record(
    tmp_path: Path, real: tuple[bytes, list[bytes], list[int]], data: st.DataObject
) -> None:
    original, payloads, offsets = real
    bit = data.draw(st.integers(0, len(original) * 8 - 1))
    damaged = bytearray(original)
    damaged[bit // 8] ^= 1 << (bit % 8)
    path = tmp_path / "journal"
    path.write_bytes(bytes(damaged))
    hit = _frame_index(offsets, len(original), bit // 8)
    result = scan_journal(bytes(damaged))  # never raises
    opened = _open(path)
    if opened is None:  # refused: nothing changed
        assert path.read_bytes() == bytes(damaged)
        assert result.stop is Stop.CORRUPT
        return
    kept, dropped = opened
    if dropped is None:  # the header's reserved field: not read, so nothing lost either
        assert hit == -1 and kept == payloads
        return
    # Repaired: the flip was in the last frame and only that frame went (a damaged last frame
    # whose zeros start at a sector boundary is indistinguishable from unwritten sectors).
    assert hit == len(payloads) - 1 and kept == payloads[:-1], (bit, hit)
    assert dropped == len(original) - offsets[-1]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_flipped_bit_mid_file_is_refused_and_read_raw_shows_every_other_record(
    tmp_path: Path, real: tuple[bytes, list[bytes], list[int]], data: st.DataObject
) -> None:
    original, payloads, offsets = real
    index = data.draw(st.integers(0, len(payloads) - 2))
    bit = data.draw(st.integers(offsets[index] * 8, offsets[index + 1] * 8 - 1))
    damaged = bytearray(original)
    damaged[bit // 8] ^= 1 << (bit % 8)
    path = tmp_path / "journal"
    path.write_bytes(bytes(damaged))
    assert _open(path) is None
    assert path.read_bytes() == bytes(damaged)
    shown = {f.offset: f.payload for f in iter_raw(path) if f.crc_ok}
    expected = {o: p for i, (o, p) in enumerate(zip(offsets, payloads, strict=True)) if i != index}
    assert shown == expected


def test_the_length_field_flip_that_used_to_cut_the_journal_is_corruption(
    tmp_path: Path, real: tuple[bytes, list[bytes], list[int]]
) -> None:
    # Bit 20 of the length: the frame now claims to run far past the end of the file.
    original, _payloads, offsets = real
    middle = offsets[len(offsets) // 2]
    damaged = bytearray(original)
    damaged[middle + 2] ^= 0x08
    path = tmp_path / "journal"
    path.write_bytes(bytes(damaged))
    result = scan_journal(bytes(damaged))
    assert (result.stop, result.error_offset) == (Stop.CORRUPT, middle)
    assert result.resume == offsets[len(offsets) // 2 + 1]
    with pytest.raises(JournalCorrupt) as info:
        open_for_append(path, create=False)
    assert info.value.offset == middle
    assert path.read_bytes() == bytes(damaged)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_cut_at_any_byte_is_a_torn_tail_and_only_the_partial_frame_goes(
    tmp_path: Path, real: tuple[bytes, list[bytes], list[int]], data: st.DataObject
) -> None:
    original, payloads, offsets = real
    cut = data.draw(st.integers(len(HEADER), len(original)))
    path = tmp_path / "journal"
    path.write_bytes(original[:cut])
    whole = [i for i, o in enumerate(offsets) if o + FRAME_OVERHEAD + len(payloads[i]) <= cut]
    opened = _open(path)
    assert opened is not None
    kept, _dropped = opened
    assert kept == payloads[: len(whole)]
    end = offsets[len(whole)] if len(whole) < len(offsets) else len(original)
    assert path.read_bytes() == original[:end]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_unwritten_sectors_at_the_end_are_a_torn_tail(
    tmp_path: Path, real: tuple[bytes, list[bytes], list[int]], data: st.DataObject
) -> None:
    # A power loss: the file has its full size, but sectors from some boundary on read as zeros.
    original, payloads, offsets = real
    boundary = data.draw(st.integers(1, len(original) // SECTOR)) * SECTOR
    path = tmp_path / "journal"
    path.write_bytes(original[:boundary] + bytes(len(original) - boundary))
    whole = [i for i, o in enumerate(offsets) if o + FRAME_OVERHEAD + len(payloads[i]) <= boundary]
    opened = _open(path)
    assert opened is not None and opened[0] == payloads[: len(whole)]


def test_find_frame_skips_zeros_and_garbage() -> None:
    frame = encode_frame(b"payload")
    buf = b"\x00" * 5000 + b"\xff\x01\x00\x07" * 300 + frame + b"tail"
    assert find_frame(buf, 0) == 5000 + 1200
    assert find_frame(buf, 5000 + 1201) is None
    assert find_frame(b"", 0) is None


def test_a_head_that_passes_its_crc_with_a_bad_payload_then_a_valid_frame_is_corruption() -> None:
    frame = bytearray(encode_frame(b"abcdef"))
    frame[-1] ^= 1
    buf = HEADER + bytes(frame) + encode_frame(b"next")
    verdict = classify(buf, len(HEADER))
    assert not verdict.torn and verdict.resume == len(HEADER) + len(frame)


def test_a_whole_last_frame_with_a_bad_head_is_corruption() -> None:
    frame = bytearray(encode_frame(b"x" * 40))
    frame[0] ^= 4  # the length says 44, the head crc disagrees
    verdict = classify(HEADER + bytes(frame), len(HEADER))
    assert not verdict.torn and "head" in verdict.reason


def test_a_head_cut_by_an_unwritten_sector_is_torn() -> None:
    filler = encode_frame(b"f" * (SECTOR - len(HEADER) - FRAME_OVERHEAD - 6))
    head = encode_frame(b"y" * 100)[:6]  # the head's first 6 bytes end the sector
    buf = HEADER + filler + head + bytes(200)
    assert len(HEADER + filler + head) == SECTOR
    result = scan_journal(buf)
    assert (result.stop, result.end) == (Stop.TORN, len(HEADER + filler))


def test_a_length_past_the_end_with_a_bad_head_crc_no_longer_hides_the_rest() -> None:
    # What format 1 read as a frame running past the end: here the head's crc says it is damaged.
    words = struct.pack("<II", 5000, zlib.crc32(b"zz"))
    bad = words + struct.pack("<I", zlib.crc32(words) ^ 1) + b"zz"
    buf = HEADER + encode_frame(b"a") + bad + encode_frame(b"b")
    result = scan_journal(buf)
    assert result.stop is Stop.CORRUPT and result.payloads == [b"a"]


def test_a_frame_being_written_is_torn_without_searching_its_bytes() -> None:
    # A payload that holds the bytes of a valid frame (user text can) does not make a frame
    # still being written look like damage: a head that passes its crc states its length truly.
    inner = encode_frame(b"looks like a frame")
    partial = encode_frame(b"x" * 50 + inner + b"y" * 500)[:200]
    result = scan_journal(HEADER + encode_frame(b"a") + partial)
    assert (result.stop, result.payloads) == (Stop.TORN, [b"a"])
