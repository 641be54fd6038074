from __future__ import annotations

import os
from pathlib import Path

import pytest
from journal_helpers import spawn_python

from corral.journal import (
    HEADER,
    JournalError,
    JournalLocked,
    JournalWriter,
    lock_holder,
    lock_taken,
    open_for_append,
    read_journal,
)
from corral.journal.writer import JournalFull

HOLD_LOCK = """
import sys
from corral.journal import JournalWriter
w = JournalWriter.open(sys.argv[1], create=True)
w.append(b"from child"); w.commit()
print("ready", flush=True)
sys.stdin.read()
w.close()
"""


def test_round_trip(journal_path: Path) -> None:
    with JournalWriter.open(journal_path, create=True) as writer:
        writer.append(b"one")
        writer.append_many([b"two", b"three"])
        writer.commit()
        writer.append(b"four")  # committed by close()
    contents = read_journal(journal_path)
    assert contents.payloads == [b"one", b"two", b"three", b"four"]
    assert not contents.torn_tail
    assert contents.end == journal_path.stat().st_size


def test_new_journal_has_only_the_header(journal_path: Path) -> None:
    JournalWriter.open(journal_path, create=True).close()
    assert journal_path.read_bytes() == HEADER


def test_create_syncs_file_and_directory(journal_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    JournalWriter.open(journal_path, create=True).close()
    assert str(journal_path) in synced
    assert str(journal_path.parent) in synced


def test_open_missing_without_create_fails(journal_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        JournalWriter.open(journal_path, create=False)
    assert not journal_path.exists()


def test_reopen_appends_after_existing_records(journal_path: Path) -> None:
    with JournalWriter.open(journal_path, create=True) as writer:
        writer.append(b"first")
    writer, existing = open_for_append(journal_path, create=False)
    with writer:
        assert existing == [b"first"]
        assert writer.repaired is None
        writer.append(b"second")
    assert read_journal(journal_path).payloads == [b"first", b"second"]


def test_group_commit_is_one_write_and_one_fdatasync(
    journal_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = JournalWriter.open(journal_path, create=True)
    calls: list[str] = []
    real_write, real_fdatasync = os.write, os.fdatasync

    def write(fd: int, data: bytes) -> int:
        calls.append("write")
        return real_write(fd, data)

    def fdatasync(fd: int) -> None:
        calls.append("fdatasync")
        real_fdatasync(fd)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    for i in range(1000):
        writer.append(b"record %d" % i)
    assert calls == []  # append does no syscalls
    assert writer.pending == 1000
    writer.commit()
    assert calls == ["write", "fdatasync"]
    assert writer.pending == 0
    writer.commit()  # nothing buffered: no syscalls
    assert calls == ["write", "fdatasync"]
    monkeypatch.undo()
    writer.close()
    assert len(read_journal(journal_path).payloads) == 1000


def test_oversize_append_is_refused_and_buffer_unchanged(journal_path: Path) -> None:
    with JournalWriter.open(journal_path, create=True) as writer:
        writer.append(b"ok")
        with pytest.raises(ValueError):
            writer.append_many([b"fine", b"x" * (1024 * 1024 + 1)])
        assert writer.pending == 1
    assert read_journal(journal_path).payloads == [b"ok"]


def test_failed_fdatasync_makes_writer_unusable(journal_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = JournalWriter.open(journal_path, create=True)

    def fail(fd: int) -> None:
        # not one a retry can cure (ENOSPC/EDQUOT/EIO are: test_journal_writer_full.py)
        raise OSError(9, "Bad file descriptor")

    monkeypatch.setattr(os, "fdatasync", fail)
    writer.append(b"a")
    with pytest.raises(OSError):
        writer.commit()
    monkeypatch.undo()
    with pytest.raises(JournalError, match="reopen"):
        writer.append(b"b")
    writer.close()  # still releases the lock
    JournalWriter.open(journal_path, create=False).close()


def test_failed_write_is_cut_back_to_a_frame_boundary(
    journal_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with JournalWriter.open(journal_path, create=True) as writer:
        writer.append(b"kept")
    writer = JournalWriter.open(journal_path, create=False)
    real_write = os.write

    def short_then_fail(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data)[:5])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_fail)
    writer.append(b"retried")
    with pytest.raises(JournalFull):
        writer.commit()
    contents = read_journal(journal_path)
    assert contents.payloads == [b"kept"]  # the 5 bytes written before the error are cut
    assert not contents.torn_tail
    monkeypatch.undo()
    writer.close()  # room again: the buffered record is committed whole
    assert read_journal(journal_path).payloads == [b"kept", b"retried"]


def test_second_writer_gets_journal_locked_naming_holder(journal_path: Path) -> None:
    with JournalWriter.open(journal_path, create=True):
        with pytest.raises(JournalLocked) as info:
            JournalWriter.open(journal_path, create=True)
        assert info.value.holder_pid == os.getpid()
        assert lock_holder(journal_path) == os.getpid()
        message = str(info.value)
        assert f"pid {os.getpid()}" in message and "corral recover --force" in message
        assert "\n" not in message
    assert lock_holder(journal_path) is None  # cleared on close
    JournalWriter.open(journal_path, create=False).close()


def test_journal_locked_by_another_process(journal_path: Path) -> None:
    child = spawn_python(HOLD_LOCK, str(journal_path))
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(JournalLocked) as info:
            open_for_append(journal_path, create=False)
        assert info.value.holder_pid == child.pid
        assert f"pid {child.pid}" in str(info.value)
        # Readers never lock: they read while the writer holds the lock.
        assert read_journal(journal_path).payloads == [b"from child"]
    finally:
        child.communicate("")
    assert child.returncode == 0
    JournalWriter.open(journal_path, create=False).close()


def test_lock_is_released_when_holder_is_killed(journal_path: Path) -> None:
    child = spawn_python(HOLD_LOCK, str(journal_path))
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    child.kill()
    child.wait()
    assert lock_holder(journal_path) == child.pid  # a stale hint, not proof
    with JournalWriter.open(journal_path, create=False) as writer:
        assert lock_holder(journal_path) == os.getpid()
        writer.append(b"after takeover")
    assert read_journal(journal_path).payloads == [b"from child", b"after takeover"]


def test_lock_taken_asks_the_kernel_not_the_pid_file(journal_path: Path) -> None:
    assert lock_taken(journal_path) is False  # no lock file yet
    with JournalWriter.open(journal_path, create=True):
        assert lock_taken(journal_path) is True
    assert lock_taken(journal_path) is False
    child = spawn_python(HOLD_LOCK, str(journal_path))
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    assert lock_taken(journal_path) is True
    child.kill()
    child.wait()
    assert lock_holder(journal_path) == child.pid and lock_taken(journal_path) is False  # stale pid


def test_lock_taken_is_unknown_for_a_lock_that_is_not_ours(journal_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user (uid 65534)")
    JournalWriter.open(journal_path, create=True).close()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, as another user: the 0600 lock is not its own
        code = 1
        try:
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            code = 0 if lock_taken(journal_path) is None else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_journal_locked_message_names_the_subject(journal_path: Path) -> None:
    error = JournalLocked(journal_path, 4242, subject="task web")
    assert str(error) == (
        f"task web is supervised by pid 4242 (lock on {journal_path}.lock); "
        "use 'corral recover --force' to take over"
    )


def test_a_writer_without_sync_writes_every_commit_but_never_fdatasyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sync=False (a pilot worker's ledger): each commit is one write, readable at once by
    another reader (it survives the writer's death), with no fdatasync; sync=True syncs."""
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real(fd))[1])
    path = tmp_path / "ledger"
    w = JournalWriter.open(path, create=True)
    w.sync = False
    for i in range(3):
        w.append(b"r%d" % i)
        w.commit()
    assert synced == []
    assert read_journal(path).payloads == [b"r0", b"r1", b"r2"]
    w.sync = True
    w.append(b"r3")
    w.commit()
    assert len(synced) == 1
    w.close()
    assert read_journal(path).payloads[-1] == b"r3"
