"""A damaged or impossible journal through the real CLI: one line, exit 2, nothing changed,
and `corral status` still lists every other task of the root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.core.records import RunUpdate, Transition, encode
from corral.journal import JournalWriter, scan_journal

CHAIN = """
name: chain
processes:
  - {name: a, cmd: "echo a"}
  - {name: b, cmd: "echo b", after: [a]}
  - {name: c, cmd: "echo c", after: [b]}
"""


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("corral: "), result.stderr
    return lines[0]


def _finished_chain(corral, spec_file) -> Path:  # type: ignore[no-untyped-def]
    """A finished 3-process task `chain` and a finished task `other`; the chain's journal."""
    corral("run", str(spec_file(CHAIN)), "--id", "chain", check=True)
    corral("simplerun", "--id", "other", "--", "true", check=True)
    return corral.root / "chain" / "journal"


def _drop_caches(task: Path) -> None:
    """Remove what `status` reads instead of the journal (status.json, checkpoint): they hold
    the fold of the prefix they were written for, so only a replay can see damage inside it."""
    for name in ("status.json", "checkpoint"):
        (task / name).unlink(missing_ok=True)


def _status_of(corral) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    result = corral("status", "--json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return {v["id"]: v for v in json.loads(result.stdout)}


def test_a_flipped_length_bit_mid_file_is_refused_and_nothing_changes(corral, spec_file) -> None:  # type: ignore[no-untyped-def]
    journal = _finished_chain(corral, spec_file)
    offsets = scan_journal(journal.read_bytes()).offsets
    middle = offsets[len(offsets) // 2]
    damaged = bytearray(journal.read_bytes())
    damaged[middle + 1] ^= 0x10  # length + 4096: the frame claims to run past the end
    journal.write_bytes(bytes(damaged))
    ledger = (corral.root / "chain" / "reaper.log").read_bytes()

    assert f"byte {middle}" in _one_line_error(corral("read", "chain"))
    assert f"byte {middle}" in _one_line_error(corral("recover", "chain"))
    # status.json and the checkpoint were made from the journal before it was damaged: they
    # no longer match it, so status replays and says what the journal says now
    views = _status_of(corral)
    assert views["chain"]["state"] == "CORRUPT" and f"byte {middle}" in views["chain"]["error"]
    assert views["other"]["state"] == "SUCCESS"

    raw = corral("read", "--raw", "--json", "chain")
    assert raw.returncode == 0, raw.stderr
    shown = [json.loads(line) for line in raw.stdout.splitlines()]
    assert [s["offset"] for s in shown] == offsets  # every record, the ones after the damage too
    assert [s["type"] for s in shown].count("CORRUPT") == 1
    # nothing changed, nothing ran again
    assert journal.read_bytes() == bytes(damaged)
    assert (corral.root / "chain" / "reaper.log").read_bytes() == ledger


def _append(journal: Path, *payloads: bytes) -> int:
    """Append valid frames holding `payloads`; the offset of the first one."""
    with JournalWriter.open(journal, create=False) as writer:
        first = writer.size
        for payload in payloads:
            writer.append(payload)
    return first


IMPOSSIBLE = {
    "job that does not exist": encode(Transition(job=7, state="ACTIVE", at=1.0)),
    "unknown process": encode(RunUpdate(job=0, process="zz", run=0, state="LAUNCHING", at=1.0)),
    "record the decoder refuses": b"\x93\x01\x02",
    "not msgpack at all": b"\xc1\xc1\xc1",
}


@pytest.mark.parametrize("what", sorted(IMPOSSIBLE))
def test_an_impossible_record_gives_one_line_naming_task_and_offset(corral, spec_file, what: str) -> None:  # type: ignore[no-untyped-def]
    journal = _finished_chain(corral, spec_file)
    offset = _append(journal, IMPOSSIBLE[what])
    before = journal.read_bytes()
    # the record lies after the checkpoint: readers fold it onto the checkpoint, same line
    for command in (("read", "chain"), ("recover", "chain"), ("wait", "--ensemble", "chain", "0")):
        line = _one_line_error(corral(*command))
        assert "task chain" in line and f"byte {offset}" in line, line
    views = _status_of(corral)
    assert views["chain"]["state"] == "CORRUPT" and f"byte {offset}" in views["chain"]["error"]
    assert views["other"]["state"] == "SUCCESS"
    raw = corral("read", "--raw", "chain")
    assert raw.returncode == 0 and "Traceback" not in raw.stderr, raw.stderr
    assert journal.read_bytes() == before


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_flipped_bit_or_cut_never_gives_a_traceback(corral, spec_file, data: st.DataObject) -> None:  # type: ignore[no-untyped-def]
    journal = corral.root / "chain" / "journal"
    if not journal.exists():
        _finished_chain(corral, spec_file)
        shutil.copyfile(journal, corral.root / "pristine")
    original = (corral.root / "pristine").read_bytes()
    if data.draw(st.booleans(), label="flip"):
        bit = data.draw(st.integers(0, len(original) * 8 - 1), label="bit")
        damaged = bytearray(original)
        damaged[bit // 8] ^= 1 << (bit % 8)
    else:
        damaged = bytearray(original[: data.draw(st.integers(0, len(original) - 1), label="cut")])
    journal.write_bytes(bytes(damaged))
    valid = scan_journal(bytes(damaged)).payloads  # the records that checked out before
    for command in (("read", "chain"), ("read", "--raw", "chain"), ("status",), ("recover", "chain")):
        result = corral(*command)
        assert "Traceback" not in result.stderr, (command, result.stderr)
        assert result.returncode in (0, 1, 2, 3), (command, result.returncode, result.stderr)
    after = journal.read_bytes()
    if after != bytes(damaged):  # recover went ahead: it kept every valid record, in order
        assert scan_journal(after).payloads[: len(valid)] == valid


def _hostile(corral, name: str) -> Path:  # type: ignore[no-untyped-def]
    task = corral.root / name
    task.mkdir()
    return task / "journal"


def _refused_everywhere(corral, name: str) -> None:  # type: ignore[no-untyped-def]
    for command in (("read", name), ("recover", name)):
        _one_line_error(corral(*command))
    raw = corral("read", "--raw", name)  # shows what it can, or says in one line why it cannot
    if raw.returncode == 0:
        assert "CORRUPT" in raw.stdout and not raw.stderr
    else:
        _one_line_error(raw)
    views = _status_of(corral)
    assert views[name]["state"] in ("CORRUPT", "UNREADABLE") and views[name]["error"]
    assert views["other"]["state"] == "SUCCESS"


def test_garbage_empty_directory_and_symlink_journals(corral) -> None:  # type: ignore[no-untyped-def]
    corral("simplerun", "--id", "other", "--", "true", check=True)
    garbage = _hostile(corral, "garbage")
    garbage.write_bytes(os.urandom(3000))
    _hostile(corral, "empty").write_bytes(b"")
    _hostile(corral, "dir").mkdir()
    _hostile(corral, "link").symlink_to(corral.root / "other" / "journal")
    before = garbage.read_bytes()
    for name in ("garbage", "dir", "link"):
        _refused_everywhere(corral, name)
    assert garbage.read_bytes() == before
    other = (corral.root / "other" / "journal").read_bytes()
    _one_line_error(corral("read", "empty"))
    assert _status_of(corral)["empty"]["state"] == "UNREADABLE"
    assert (corral.root / "other" / "journal").read_bytes() == other  # the link's target untouched


def test_a_journal_the_user_cannot_read(corral) -> None:  # type: ignore[no-untyped-def]
    # Root ignores file modes; dropping every capability (setpriv) makes the same uid an
    # ordinary user for permission checks (a "nobody" user cannot run this venv's Python).
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv is not installed")
    corral("simplerun", "--id", "other", "--", "true", check=True)
    corral("simplerun", "--id", "locked", "--", "true", check=True)
    journal = corral.root / "locked" / "journal"
    journal.chmod(0)
    _drop_caches(corral.root / "locked")
    before_stat = journal.stat()
    unprivileged = [setpriv, "--bounding-set=-all", "--inh-caps=-all"]
    for command in (("read", "locked"), ("read", "--raw", "locked"), ("recover", "locked")):
        result = subprocess.run(
            unprivileged + corral.argv(*command), capture_output=True, text=True, timeout=60, env=corral.env
        )
        assert "Permission denied" in _one_line_error(result)
    result = subprocess.run(
        unprivileged + corral.argv("status", "--json"), capture_output=True, text=True, env=corral.env
    )
    views = {v["id"]: v for v in json.loads(result.stdout)}
    assert views["locked"]["state"] == "UNREADABLE" and views["other"]["state"] == "SUCCESS"
    after = journal.stat()
    assert (after.st_size, after.st_mtime_ns) == (before_stat.st_size, before_stat.st_mtime_ns)
    journal.chmod(0o600)
