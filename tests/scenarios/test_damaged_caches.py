"""status.json and the checkpoint are caches of a journal's fold: one that is damaged, torn,
another task's, another root's or older than its journal is never believed. `status`,
`status --json`, `status --jobs`, `read`, `tail` and the observer's task list say what the
journal says (a replay), and a journal damaged under intact caches is still reported."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.cli.main import cli
from corral.journal import scan_journal
from corral.observe.catalog import Catalog

TASK = """
name: t
processes:
  - {name: good, cmd: "echo good"}
  - {name: bad, cmd: "echo bad >&2; exit 3", after: [good]}
"""
ENSEMBLE = 'name: e\njob:\n  cmd: "test {{params.x}} != 2"\nparams:\n  x: [1, 2, 3]\n'
CACHES = ("status.json", "checkpoint")


def _cli(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--root", str(root), *args], catch_exceptions=False)
    return result.exit_code, result.output


def _status(root: Path, *args: str) -> dict[str, dict]:
    code, out = _cli(root, "status", *args, "--json")
    assert code == 0, out
    # as_of: when a live ensemble's status.json was written (shown only when read from it)
    return {v["id"]: {k: x for k, x in v.items() if k != "as_of"} for v in json.loads(out)}


def _truth(root: Path) -> dict[str, object]:
    """What every reader says; compared before and after the caches are tampered with."""
    return {
        "status": _status(root),
        "jobs": _status(root, "e", "--jobs"),
        "table": _cli(root, "status")[1],
        "read": _cli(root, "read", "t"),
        "tail": _cli(root, "tail", "t", "bad", "--stderr"),
        "observer": {v["id"]: v for v in Catalog(root).views()},
    }


@pytest.fixture
def finished(corral, spec_file) -> Path:  # type: ignore[no-untyped-def]
    """A root with a FAILED task `t`, a FAILED ensemble `e` (job 1 failed), a SUCCESS task
    `other`, all finished with their caches written; and `twin`: another root whose `t` and
    `e` SUCCEEDED (their caches are sealed, of the same ids, and lie about this root)."""
    assert corral("run", str(spec_file(TASK)), "--id", "t").returncode == 1
    assert corral("run", str(spec_file(ENSEMBLE, "e.yaml")), "--id", "e").returncode == 1
    corral("simplerun", "--id", "other", "--", "true", check=True)
    twin = corral.root.parent / "twin"
    twin.mkdir()
    corral.root, real = twin, corral.root
    corral("simplerun", "--id", "t", "--", "true", check=True)
    corral(
        "run",
        str(spec_file(ENSEMBLE.replace("test {{params.x}} != 2", "true"), "e2.yaml")),
        "--id",
        "e",
        check=True,
    )
    corral.root = real
    for task in ("t", "e", "other"):
        assert all((real / task / name).exists() for name in CACHES), task
    return real


def _journal_truth(root: Path) -> dict[str, object]:
    """The readers' answers from the journals alone (caches moved away, then put back)."""
    kept = {}
    for task in ("t", "e", "other"):
        for name in CACHES:
            path = root / task / name
            kept[path] = path.read_bytes()
            path.unlink()
    truth = _truth(root)
    for path, data in kept.items():
        path.write_bytes(data)
    return truth


def test_intact_caches_agree_with_the_journal(finished: Path) -> None:
    truth = _journal_truth(finished)
    assert truth["status"]["t"]["state"] == "FAILED" and truth["status"]["e"]["state"] == "FAILED"
    assert _truth(finished) == truth


def _garbage(path: Path, twin: Path, other: Path) -> None:
    path.write_bytes(os.urandom(max(1, path.stat().st_size)))


def _truncated(path: Path, twin: Path, other: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _one_bit(path: Path, twin: Path, other: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) * 2 // 3] ^= 0x04
    path.write_bytes(bytes(data))


def _edited(path: Path, twin: Path, other: Path) -> None:
    """Valid JSON claiming success, its seal kept (status.json) / a byte of state changed."""
    if path.name == "status.json":
        data = json.loads(path.read_bytes())
        data["state"] = "SUCCESS"
        path.write_text(json.dumps(data))
    else:
        _one_bit(path, twin, other)


def _another_tasks(path: Path, twin: Path, other: Path) -> None:
    shutil.copyfile(other / path.name, path)


def _same_id_another_root(path: Path, twin: Path, other: Path) -> None:
    shutil.copyfile(twin / path.parent.name / path.name, path)


TAMPERS: list[Callable[[Path, Path, Path], None]] = [
    _garbage,
    _truncated,
    _one_bit,
    _edited,
    _another_tasks,
    _same_id_another_root,
]


@pytest.mark.parametrize("which", [("status.json",), ("checkpoint",), CACHES])
@pytest.mark.parametrize("tamper", TAMPERS, ids=lambda f: f.__name__.strip("_"))
def test_a_tampered_cache_is_never_believed(finished: Path, which: tuple[str, ...], tamper) -> None:  # type: ignore[no-untyped-def]
    truth = _journal_truth(finished)
    twin, other = finished.parent / "twin", finished / "other"
    for task in ("t", "e"):
        for name in which:
            tamper(finished / task / name, twin, other)
    assert _truth(finished) == truth


@pytest.mark.parametrize("name", CACHES)
def test_a_cache_of_an_older_journal_is_never_believed(corral, finished: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    """A cache written (sealed, of this very task) when the journal was shorter: the journal
    has records since (here: `t` before its last record said SUCCESS, and was damaged)."""
    task = finished / "t"
    journal = task / "journal"
    whole = journal.read_bytes()
    end = scan_journal(whole).offsets[-1]
    truth = _journal_truth(finished)
    cache = (task / name).read_bytes()
    journal.write_bytes(whole[:end])
    corral("recover", "t")  # a new supervisor on the shorter journal writes new caches
    assert (task / name).read_bytes() != cache
    journal.write_bytes(whole)  # the journal back as it was, the caches of the shorter one
    for other in CACHES:
        if other != name:
            (task / other).unlink(missing_ok=True)
    assert _truth(finished) == truth


def test_a_journal_damaged_under_intact_caches_is_reported(finished: Path) -> None:
    journal = finished / "t" / "journal"
    offsets = scan_journal(journal.read_bytes()).offsets
    middle = offsets[len(offsets) // 2]
    damaged = bytearray(journal.read_bytes())
    damaged[middle + 1] ^= 0x10  # a frame's length: it claims to run past the end
    journal.write_bytes(bytes(damaged))
    views = _status(finished)
    assert views["t"]["state"] == "CORRUPT" and f"byte {middle}" in views["t"]["error"]
    assert "t" in views["t"]["error"]
    assert views["e"]["state"] == "FAILED" and views["other"]["state"] == "SUCCESS"
    code, out = _cli(finished, "read", "t")
    assert code == 2 and len(out.strip().splitlines()) == 1 and f"byte {middle}" in out, out
    assert {v["id"]: v["state"] for v in Catalog(finished).views()}["t"] == "CORRUPT"


_KNOWN: dict[Path, tuple[dict[str, object], dict[Path, bytes]]] = {}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(snapshot=st.binary(max_size=2000), checkpoint=st.binary(max_size=2000), keep_header=st.booleans())
def test_random_bytes_in_the_caches_never_change_an_answer(
    finished: Path, snapshot: bytes, checkpoint: bytes, keep_header: bool
) -> None:
    if finished not in _KNOWN:  # once for all the examples (one root)
        real = {
            finished / task / "checkpoint": (finished / task / "checkpoint").read_bytes() for task in "te"
        }
        _KNOWN[finished] = (_journal_truth(finished), real)
    truth, real = _KNOWN[finished]
    for path, data in real.items():
        # random bytes, or random bytes after the real header (so the crc is what refuses them)
        path.write_bytes(data[:48] + checkpoint if keep_header else checkpoint)
        (path.parent / "status.json").write_bytes(snapshot)
    assert _truth(finished) == truth
