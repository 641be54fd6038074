"""The reapers' ledger kept bounded (supervisor/ledger.py): a rewrite keeps what recovery needs
(lines of runs the journal believes live, R/X lines of reapers alive), drops the rest and any
garbage, carries a torn last line over, loses no line a live reaper writes meanwhile, and a
SIGKILL at each of its steps leaves a ledger recovery reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_reaper import Rig, wait_until

from corral.supervisor import ledger
from corral.supervisor.spawn import Ledger


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.cleanup()


def _kinds(path: Path) -> list[tuple[str, ...]]:
    return [tuple(line.split("\t")[:4]) for line in path.read_text().splitlines()]


def test_a_rewrite_keeps_live_runs_and_alive_reapers_and_the_reaper_writes_to_the_new_file(
    rig: Rig, gate, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    live, done = (0, "live", 0), (1, "done", 0)
    held = gate()
    rig.spawn(live, ["/bin/sh", "-c", held.cmd])
    rig.spawn(done, ["true"])
    rig.event("S", live)
    rig.event("E", done)
    with open(rig.ledger, "a") as f:
        f.write("not a ledger line\n")
        f.write("S\tx\tlive\t0\t1\t2\t3\t4.0\n")  # a bad job number
        f.write("E\t0\tlive\n")  # too short
        f.write("R\t999999\t123\t1.0\nX\t999999\t2.0\n")  # a reaper long gone
        f.write("S\t0\tlive\t0\t" + "9" * (3 << 20) + "\n")  # a huge line
    reader = Ledger(str(rig.ledger))
    reader.refresh()
    assert reader.end_of(done, 0.0) == 0
    old = rig.ledger.stat().st_ino
    size = ledger.rewrite(str(rig.ledger), {live})
    assert rig.ledger.stat().st_ino != old and size == rig.ledger.stat().st_size
    assert not Path(str(rig.ledger) + ledger.SUFFIX).exists()
    kept = _kinds(rig.ledger)
    assert [k[0] for k in kept] == ["R", "S"] and kept[0][1] == str(rig.spawner.pid)
    assert kept[1][1:] == ("0", "live", "0") and size < 200
    assert rig.ledger.stat().st_mode & 0o777 == 0o600
    held.release()
    assert rig.event("E", live)[5] == 0
    # the reaper found the new file: its E line is there, and a reader follows the new file
    wait_until(lambda: rig.line("E", live))
    reader.refresh()
    assert reader.end_of(live, 0.0) == 0 and reader.spawn_of(live, 0.0) is not None
    assert reader.end_of(done, 0.0) is None, "what the rewrite dropped is forgotten"


def test_a_torn_last_line_is_carried_over_and_completed_later(tmp_path: Path) -> None:
    path = tmp_path / "reaper.log"
    a, b = (0, "a", 0), (1, "b", 0)
    path.write_text("S\t0\ta\t0\t100\t2000\t99\t1.0\nS\t1\tb\t0\t101\t2001\t99\t1.0\nE\t0\ta\t0\t100\t7")
    ledger.rewrite(str(path), {a})
    assert path.read_text() == "S\t0\ta\t0\t100\t2000\t99\t1.0\nE\t0\ta\t0\t100\t7"
    with open(path, "a") as f:
        f.write("\t2.0\n")  # the reaper writes the rest of its line after a full disk
    reader = Ledger(str(path))
    reader.refresh()
    assert reader.end_of(a, 0.0) == 7 and reader.spawn_of(b, 0.0) is None


def test_a_missing_or_empty_ledger_is_nothing_to_rewrite(tmp_path: Path) -> None:
    assert ledger.rewrite(str(tmp_path / "reaper.log"), set()) is None
    (tmp_path / "reaper.log").write_bytes(b"")
    assert ledger.rewrite(str(tmp_path / "reaper.log"), set()) == 0
    (tmp_path / "reaper.log").write_bytes(b"\xff\xfe\x00garbage\n" * 1000 + b"x" * (1 << 17))
    assert ledger.rewrite(str(tmp_path / "reaper.log"), {(0, "a", 0)}) == 0  # a huge torn tail too


def test_rewrites_while_a_reaper_writes_lose_no_line(rig: Rig) -> None:
    keys = [(job, "p", 0) for job in range(300)]
    for start in range(0, len(keys), 20):
        for key in keys[start : start + 20]:
            rig.spawner.spawn(key, ["true"], {}, str(rig.base), None, None)
        assert rig.spawner.flush()
        ledger.rewrite(str(rig.ledger), set(keys))  # every run is live to the journal: all kept
    for key in keys:
        rig.event("E", key, timeout=60)
    ledger.rewrite(str(rig.ledger), set(keys))
    reader = Ledger(str(rig.ledger))
    reader.refresh()
    missing = [k for k in keys if reader.spawn_of(k, 0.0) is None or reader.end_of(k, 0.0) != 0]
    assert not missing, missing[:5]


_KILLER = """
import os, signal, sys
from corral.supervisor import ledger
point = sys.argv[2]
def hook(at):
    if at == point:
        os.kill(os.getpid(), signal.SIGKILL)
ledger.rewrite(sys.argv[1], {(0, "live", 0)}, hook)
"""


@pytest.mark.parametrize("point", ["ledger-write", "ledger-synced", "ledger-renamed"])
def test_a_sigkill_at_each_step_of_a_rewrite_leaves_a_ledger_recovery_reads(
    tmp_path: Path, point: str
) -> None:
    path = tmp_path / "reaper.log"
    lines = [
        f"S\t{job}\tdone\t0\t{100 + job}\t1\t99\t1.0\nE\t{job}\tdone\t0\t{100 + job}\t0\t2.0\n"
        for job in range(50)
    ]
    path.write_text("".join(lines) + "S\t0\tlive\t0\t7\t8\t99\t3.0\nE\t0\tlive\t0\t7\t-9\t4.0\n")
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(path), point], env=os.environ, check=False)
    assert proc.returncode == -signal.SIGKILL
    leftover = Path(str(path) + ledger.SUFFIX)
    assert leftover.exists() == (point != "ledger-renamed")
    reader = Ledger(str(path))
    reader.refresh()
    assert reader.spawn_of((0, "live", 0), 0.0) == (7, 8, 99) and reader.end_of((0, "live", 0), 0.0) == -9
    whole = point != "ledger-renamed"  # before the rename: the old ledger, untouched
    assert (reader.end_of((3, "done", 0), 0.0) == 0) == whole
    ledger.rewrite(str(path), {(0, "live", 0)})  # the next rewrite drops the leftover
    assert not leftover.exists() and len(path.read_text().splitlines()) == 2


def test_a_writer_stuck_holding_the_lock_makes_the_rewrite_give_up_not_hang(tmp_path: Path) -> None:
    import fcntl

    path = tmp_path / "reaper.log"
    path.write_text("S\t0\ta\t0\t100\t2000\t99\t1.0\n" * 10)
    before = path.read_bytes()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # a reaper in the middle of a write (stopped there)
        with pytest.raises(OSError, match="lock"):
            ledger.rewrite(str(path), set())
        assert path.read_bytes() == before and not Path(str(path) + ledger.SUFFIX).exists()
    finally:
        os.close(fd)
    assert ledger.rewrite(str(path), set()) == 0
