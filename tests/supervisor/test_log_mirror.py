"""supervisor/mirror.py: a run's log files copied to a console that may be slow or gone,
without ever blocking or failing."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.supervisor import mirror
from corral.supervisor.mirror import Mirror


@pytest.fixture
def pipes() -> Iterator[tuple[int, int, int, int]]:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    yield out_r, out_w, err_r, err_w
    for fd in (out_r, out_w, err_r, err_w):
        try:
            os.close(fd)
        except OSError:
            pass


def _files(tmp_path: Path) -> tuple[Path, Path]:
    out, err = tmp_path / "a.0.stdout", tmp_path / "a.0.stderr"
    out.write_bytes(b"")
    err.write_bytes(b"")
    return out, err


def _tick(m: Mirror) -> None:
    m.timer.at = time.time() - 1  # due now: the interval is not what is tested here
    m.check()


def _read(fd: int) -> bytes:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 1 << 20)
    except BlockingIOError:
        return b""


def test_complete_lines_go_out_prefixed_and_the_rest_when_the_run_ends(tmp_path: Path, pipes) -> None:  # type: ignore[no-untyped-def]
    out_r, out_w, err_r, err_w = pipes
    out, err = _files(tmp_path)
    m = Mirror(out_w, err_w)
    m.watch("k", "a[0]", str(out), str(err))
    out.write_bytes(b"one\ntw")
    err.write_bytes(b"oops\n")
    _tick(m)
    assert _read(out_r) == b"a[0] | one\n" and _read(err_r) == b"a[0] | oops\n"
    with out.open("ab") as f:
        f.write(b"o\nthree")
    m.forget("k")
    assert _read(out_r) == b"a[0] | two\na[0] | three\n"
    assert m.due() is None


def test_a_rotated_file_is_followed_from_its_new_start(tmp_path: Path, pipes) -> None:  # type: ignore[no-untyped-def]
    out_r, out_w, _, err_w = pipes
    out, err = _files(tmp_path)
    m = Mirror(out_w, err_w)
    m.watch("k", "p", str(out), str(err))
    out.write_bytes(b"a long first line\n")
    _tick(m)
    out.write_bytes(b"new\n")  # copytruncate, then the run wrote again
    _tick(m)
    assert _read(out_r) == b"p | a long first line\np | new\n"


def test_a_console_nobody_reads_never_blocks_and_says_what_it_dropped(tmp_path: Path, pipes) -> None:  # type: ignore[no-untyped-def]
    out_r, out_w, _, err_w = pipes
    fcntl.fcntl(out_w, fcntl.F_SETPIPE_SZ, 4096)
    out, err = _files(tmp_path)
    m = Mirror(out_w, err_w)
    m.watch("k", "p", str(out), str(err))
    line = b"x" * 99 + b"\n"
    out.write_bytes(line * (3 * mirror.MAX_PENDING // len(line)))  # 3 MB: far more than fits
    started = time.monotonic()
    for _ in range(5):
        _tick(m)
    m.forget("k")
    assert time.monotonic() - started < 30  # returned: never waited for the reader
    assert m.due() is not None  # what waits in the buffer goes out later
    received = bytearray()
    while m.due() is not None:
        received += _read(out_r)
        _tick(m)
    received += _read(out_r)
    lines = bytes(received).splitlines()
    assert lines[0] == b"p | " + line.strip()
    assert any(b"bytes dropped]" in x for x in lines)
    assert all(x == b"p | " + line.strip() or x.startswith(b"[corral: ") for x in lines)


def test_a_console_that_is_gone_ends_the_copy_quietly(tmp_path: Path, pipes) -> None:  # type: ignore[no-untyped-def]
    out_r, out_w, _, err_w = pipes
    os.close(out_r)  # the reader went away: writes get EPIPE
    out, err = _files(tmp_path)
    m = Mirror(out_w, err_w)
    m.watch("k", "p", str(out), str(err))
    out.write_bytes(b"lost\n")
    _tick(m)
    assert m.closed and m.due() is None
    m.watch("k2", "p", str(out), str(err))  # nothing more is followed
    assert m.due() is None
    m.forget("k")


def test_a_long_line_without_a_newline_goes_out_in_pieces(tmp_path: Path, pipes) -> None:  # type: ignore[no-untyped-def]
    out_r, out_w, _, err_w = pipes
    fcntl.fcntl(out_w, fcntl.F_SETPIPE_SZ, 1 << 20)
    out, err = _files(tmp_path)
    m = Mirror(out_w, err_w)
    m.watch("k", "p", str(out), str(err))
    out.write_bytes(b"y" * (mirror.MAX_LINE * 2 + 10))
    _tick(m)
    got = b""
    while m.waiting:
        got += _read(out_r)
        _tick(m)
    got += _read(out_r)
    assert got.splitlines() == [b"p | " + b"y" * mirror.MAX_LINE] * 2
