"""A commit that hits a full file system, a quota or an I/O error can be tried again: the file
is cut back to the last durable frame and the records stay buffered."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from corral.journal import JournalError, JournalWriter, read_journal
from corral.journal.writer import JournalFull


def _fail_once(monkeypatch: pytest.MonkeyPatch, name: str, code: int, *, partial: bool = False) -> None:
    real = getattr(os, name)
    state = {"failed": False}

    def failing(fd: int, *args: object) -> object:
        if state["failed"]:
            return real(fd, *args)
        state["failed"] = True
        if partial:  # part of the data lands before the error, as on a file system filling up
            real(fd, bytes(args[0])[:3])  # type: ignore[arg-type]
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, name, failing)


@pytest.mark.parametrize(
    ("name", "code", "partial"),
    [
        ("write", errno.ENOSPC, True),
        ("write", errno.EDQUOT, False),
        ("write", errno.EIO, True),
        ("fdatasync", errno.EIO, False),
        ("fdatasync", errno.ENOSPC, False),
    ],
)
def test_a_failed_commit_is_retried_whole(
    journal_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, code: int, partial: bool
) -> None:
    with JournalWriter.open(journal_path, create=True) as writer:
        writer.append(b"durable")
        writer.commit()
        size = journal_path.stat().st_size
        writer.append(b"one")
        writer.append(b"two")
        _fail_once(monkeypatch, name, code, partial=partial)
        with pytest.raises(JournalFull) as caught:
            writer.commit()
        assert caught.value.errno == code and os.strerror(code) in str(caught.value)
        assert journal_path.stat().st_size == size  # cut back: nothing half-written stays
        assert read_journal(journal_path).payloads == [b"durable"]
        writer.commit()  # room again: the same records, once
    assert read_journal(journal_path).payloads == [b"durable", b"one", b"two"]


def test_another_error_still_stops_the_writer(journal_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = JournalWriter.open(journal_path, create=True)
    writer.append(b"one")
    _fail_once(monkeypatch, "fdatasync", errno.EBADF)
    with pytest.raises(OSError) as caught:
        writer.commit()
    assert not isinstance(caught.value, JournalFull)
    with pytest.raises(JournalError):
        writer.commit()
    writer.close()


def test_abandon_drops_the_buffer_and_closes_without_writing(journal_path: Path) -> None:
    writer = JournalWriter.open(journal_path, create=True)
    writer.append(b"kept")
    writer.commit()
    writer.append(b"dropped")
    writer.abandon()
    writer.close()
    assert read_journal(journal_path).payloads == [b"kept"]
