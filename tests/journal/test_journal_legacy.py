"""Format-1 journals (journal/legacy.py): still read with the old rules, never written to."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from corral.journal import JournalReadOnly, iter_raw, open_for_append, read_journal
from corral.journal.frame import LEGACY_VERSION
from corral.journal.watch import Tail


def v1_journal(payloads: list[bytes]) -> bytes:
    head = b"CORRALJ\x00" + struct.pack("<HH", LEGACY_VERSION, 0)
    return head + b"".join(struct.pack("<II", len(p), zlib.crc32(p)) + p for p in payloads)


def test_a_format_1_journal_is_read_but_never_opened_for_append(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    original = v1_journal([b"one", b"two", b"three"]) + b"\x05\x00"  # and a torn tail
    path.write_bytes(original)
    contents = read_journal(path)
    assert contents.payloads == [b"one", b"two", b"three"] and contents.torn_tail
    assert [f.payload for f in iter_raw(path) if f.crc_ok] == [b"one", b"two", b"three"]
    assert Tail(path).read_new() == [b"one", b"two", b"three"]
    with pytest.raises(JournalReadOnly, match="format 1 .* read-only"):
        open_for_append(path, create=False)
    assert path.read_bytes() == original  # the torn tail was not cut either
