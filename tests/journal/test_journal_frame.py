from __future__ import annotations

import struct
import zlib

import pytest

from corral.journal import HEADER, MAX_FRAME, Stop, encode_frame, scan, scan_journal
from corral.journal.frame import HEADER_SIZE


def test_header_layout() -> None:
    assert b"CORRALJ\x00" + struct.pack("<HH", 2, 0) == HEADER
    assert len(HEADER) == HEADER_SIZE == 12


def test_frame_layout() -> None:
    frame = encode_frame(b"hello")
    words = struct.pack("<II", 5, zlib.crc32(b"hello"))
    assert frame == words + struct.pack("<I", zlib.crc32(words)) + b"hello"


def test_payload_bigger_than_max_frame_is_refused() -> None:
    encode_frame(b"x" * MAX_FRAME)
    with pytest.raises(ValueError, match="MAX_FRAME"):
        encode_frame(b"x" * (MAX_FRAME + 1))


def test_empty_payload_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_frame(b"")


def test_scan_clean() -> None:
    buf = HEADER + encode_frame(b"a") + encode_frame(b"bc")
    result = scan_journal(buf)
    assert result.stop is Stop.EOF
    assert result.payloads == [b"a", b"bc"]
    assert result.offsets == [12, 12 + 13]
    assert result.end == len(buf)


def test_scan_from_start_offset() -> None:
    buf = b"junk" + encode_frame(b"a")
    assert scan(buf, 4).payloads == [b"a"]


def test_empty_file_is_an_empty_journal_without_header() -> None:
    result = scan_journal(b"")
    assert (result.stop, result.end, result.payloads) == (Stop.EOF, 0, [])


def test_partial_header_is_torn() -> None:
    assert scan_journal(HEADER[:5]).stop is Stop.TORN


def test_bad_magic_is_corruption_at_zero() -> None:
    result = scan_journal(b"NOTAJRNL" + HEADER[8:] + encode_frame(b"a"))
    assert (result.stop, result.error_offset) == (Stop.CORRUPT, 0)
    assert result.reason is not None and "magic" in result.reason


def test_unknown_version_is_corruption_at_zero() -> None:
    result = scan_journal(b"CORRALJ\x00" + struct.pack("<HH", 9, 0))
    assert (result.stop, result.error_offset) == (Stop.CORRUPT, 0)
    assert result.reason == "unsupported format version 9"


def test_zero_filled_tail_is_torn() -> None:
    good = HEADER + encode_frame(b"a")
    result = scan_journal(good + bytes(4096))
    assert (result.stop, result.end, result.payloads) == (Stop.TORN, len(good), [b"a"])


def test_frame_whose_last_sectors_were_never_written_is_torn() -> None:
    good = HEADER + encode_frame(b"a")
    frame = encode_frame(b"b" * 1000)
    cut = 512 - len(good)  # the frame's bytes from the first sector boundary on are zeros
    result = scan_journal(good + frame[:cut] + bytes(len(frame) - cut) + bytes(100))
    assert (result.stop, result.end) == (Stop.TORN, len(good))


def test_frame_with_zeros_inside_a_written_sector_is_corruption() -> None:
    # Zeros that do not start at a sector boundary are not unwritten sectors: damage.
    good = HEADER + encode_frame(b"a")
    frame = encode_frame(b"bbbb")
    result = scan_journal(good + frame[:12] + bytes(4) + bytes(100))
    assert (result.stop, result.error_offset) == (Stop.CORRUPT, len(good))


def test_impossible_length_with_data_after_is_corruption() -> None:
    good = HEADER + encode_frame(b"a")
    words = struct.pack("<II", MAX_FRAME + 1, 0)
    bad = words + struct.pack("<I", zlib.crc32(words)) + b"more data"
    result = scan_journal(good + bad)
    assert (result.stop, result.error_offset) == (Stop.CORRUPT, len(good))
