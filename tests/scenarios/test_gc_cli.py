"""`corral gc` through the real CLI: each condition, dry runs, live tasks untouched, hostile
input, and a gc SIGKILLed at random points that leaves a root `status` reads."""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import time

import pytest
from gc_helpers import count_files, make_task

DAY = 86400.0


def gc_json(corral, *args: str) -> dict:
    result = corral("gc", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def ids_left(corral) -> list[str]:
    return sorted(n for n in os.listdir(corral.root))


def test_gc_older_than_removes_only_what_ended_before(corral):
    now = time.time()
    for i, age in enumerate([10 * DAY, 8 * DAY, 1 * DAY, 60.0]):
        make_task(corral.root, f"t{i}", finished_at=now - age)
    summary = gc_json(corral, "--older-than", "7d")
    assert [r["id"] for r in summary["removed"]] == ["t0", "t1"]  # oldest first
    assert ids_left(corral) == ["t2", "t3"]
    assert summary["freed_bytes"] > 0


def test_gc_keep_keeps_the_newest(corral):
    now = time.time()
    for i in range(5):
        make_task(corral.root, f"t{i}", finished_at=now - (5 - i) * 100)  # t4 is the newest
    summary = gc_json(corral, "--keep", "2")
    assert [r["id"] for r in summary["removed"]] == ["t0", "t1", "t2"]
    assert ids_left(corral) == ["t3", "t4"]
    assert gc_json(corral, "--keep", "2")["removed"] == []  # the goal holds: nothing more goes


def test_gc_max_space_removes_the_oldest_until_everything_fits(corral):
    now = time.time()
    for i in range(4):
        make_task(corral.root, f"t{i}", finished_at=now - (4 - i) * 100, files=25, file_size=40_000)
    dry = gc_json(corral, "--max-space", "0", "--dry-run")
    per_task = dry["space_before"] // 4
    budget = dry["space_before"] - per_task - per_task // 2  # needs two tasks gone
    summary = gc_json(corral, "--max-space", str(budget))
    assert [r["id"] for r in summary["removed"]] == ["t0", "t1"]
    assert summary["space_before"] - summary["freed_bytes"] <= budget
    assert ids_left(corral) == ["t2", "t3"]


def test_gc_state_and_pattern_choose_what_goes(corral):
    make_task(corral.root, "a-ok", state="SUCCESS")
    make_task(corral.root, "a-bad", state="FAILED")
    make_task(corral.root, "b-bad", state="FAILED")
    make_task(corral.root, "a-killed", state="KILLED")
    summary = gc_json(corral, "a-*", "--state", "failed,killed")
    assert sorted(r["id"] for r in summary["removed"]) == ["a-bad", "a-killed"]
    assert ids_left(corral) == ["a-ok", "b-bad"]


def test_gc_what_logs_keeps_the_journal_so_status_and_read_answer(corral):
    d = make_task(corral.root, "t0", files=5)
    summary = gc_json(corral, "t0", "--what", "logs")
    assert [r["id"] for r in summary["removed"]] == ["t0"]
    assert not (d / "logs").exists() and (d / "sandbox").exists() and (d / "journal").exists()
    assert corral.status("t0")["state"] == "SUCCESS"
    assert corral("read", "t0").returncode == 0
    assert gc_json(corral, "t0", "--what", "logs")["removed"] == []  # nothing left to free
    gc_json(corral, "t0", "--what", "sandbox")
    assert not (d / "sandbox").exists() and (d / "journal").exists()
    assert corral.status("t0")["state"] == "SUCCESS"


def test_gc_dry_run_prints_what_would_go_and_changes_nothing(corral):
    now = time.time()
    for i in range(3):
        make_task(corral.root, f"t{i}", finished_at=now - (3 - i) * DAY)
    before = {n: count_files(corral.root / n) for n in ids_left(corral)}
    result = corral("gc", "--older-than", "36h", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would remove t0" in result.stdout and "would remove t1" in result.stdout
    assert "t2" not in result.stdout
    assert "would remove 2 tasks" in result.stdout and "KiB" in result.stdout
    assert {n: count_files(corral.root / n) for n in ids_left(corral)} == before
    assert gc_json(corral, "--older-than", "36h", "--dry-run")["freed_bytes"] > 0


def test_gc_never_touches_live_or_unfinished_tasks(corral, spec_file):
    make_task(corral.root, "old-done", finished_at=1.0)
    make_task(corral.root, "unfinished", state="ACTIVE", finished_at=1.0)  # supervisor died
    held = make_task(corral.root, "held", finished_at=1.0)
    spec = spec_file("name: live\nprocesses:\n  - {name: s, cmd: sleep 60}\n")
    assert corral("run", str(spec), "--id", "live", "--detach").returncode == 0
    corral.wait_for(lambda: corral.status("live")["state"] == "ACTIVE")
    # a finished journal whose lock someone holds (a `recover` or `run --retry-failed` starting)
    fd = os.open(held / "journal.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        summary = gc_json(corral, "*")
    finally:
        os.close(fd)
    assert [r["id"] for r in summary["removed"]] == ["old-done"]
    assert [(s["id"], s["reason"]) for s in summary["skipped"]] == [("held", "supervised")]
    assert ids_left(corral) == ["held", "live", "unfinished"]
    assert corral.status("live")["state"] == "ACTIVE"
    result = corral("kill", "live", "--grace", "1")
    assert result.returncode == 0 and "KILLED" in result.stdout, result


def test_gc_bad_input_is_one_line_and_changes_nothing(corral):
    make_task(corral.root, "t0")
    cases = [
        ("--older-than", "soon"),
        ("--older-than", "-5"),
        ("--max-space", "lots"),
        ("--max-space", "-1GB"),
        ("--keep", "-1"),
        ("--state", "running"),
        ("--state", "bogus"),
        ("--what", "everything"),
        (),  # no condition at all: refused rather than removing everything
    ]
    for args in cases:
        result = corral("gc", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, (args, result.stderr)
    assert ids_left(corral) == ["t0"] and count_files(corral.root / "t0") > 0


def test_gc_follows_no_symlink_out_of_the_root(corral, tmp_path):
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "data").write_text("keep me")
    d = make_task(corral.root, "t0")
    os.symlink(outside, d / "sandbox" / "link")  # a job linked to data it must not own
    elsewhere = make_task(tmp_path / "other", "t1")
    os.symlink(elsewhere, corral.root / "t1")  # a task directory that is a link
    summary = gc_json(corral, "*")
    assert [r["id"] for r in summary["removed"]] == ["t0"]
    assert (outside / "data").read_text() == "keep me"
    assert (elsewhere / "journal").exists() and os.path.islink(corral.root / "t1")


def test_gc_removes_what_a_job_made_unwritable(corral):
    d = make_task(corral.root, "t0")
    locked = d / "sandbox" / "ro"
    locked.mkdir()
    (locked / "f").write_text("x")
    os.chmod(locked, 0o500)
    gc_json(corral, "t0")
    assert ids_left(corral) == []


def _whole_or_gone(corral, originals: dict[str, int]) -> None:
    result = corral("status", "--json")
    assert result.returncode == 0, result.stderr
    views = json.loads(result.stdout)
    assert all(v["state"] == "SUCCESS" for v in views), views
    for name in os.listdir(corral.root):
        if name.startswith(".gc-"):
            continue  # trash: invisible to status, deleted by the next gc
        assert count_files(corral.root / name) == originals[name], f"{name} is half deleted"
    assert sorted(v["id"] for v in views) == sorted(n for n in os.listdir(corral.root) if n[0] != ".")


@pytest.mark.slow
def test_gc_sigkilled_at_random_points_leaves_every_task_whole_or_gone(corral):
    rng = random.Random(int(os.environ.get("CORRAL_CRASH_SEED", "20261130")))
    points = ["gc-locked", "gc-renamed", "gc-deleting"]
    originals: dict[str, int] = {}
    kills = 0
    for attempt in range(20):
        for i in range(6):
            name = f"t{attempt}-{i}"
            make_task(corral.root, name, finished_at=1.0 + i, files=150, file_size=512)
            originals[name] = count_files(corral.root / name)
        env = {}
        if attempt % 2:  # half at injected points, half at random moments
            env["CORRAL_CRASH"] = f"{rng.choice(points)}:{rng.randint(1, 6)}"
        proc = corral.start("gc", "*", env=env)
        if not env:
            time.sleep(rng.uniform(0.05, 0.6))  # the random moment of the kill, not a wait
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL), proc.returncode
        kills += proc.returncode == -signal.SIGKILL
        _whole_or_gone(corral, originals)
    assert kills >= 10, kills  # most gcs really died half-way
    assert gc_json(corral, "*")["trash_cleaned"] >= 0
    assert ids_left(corral) == []  # the last gc removed the rest and every leftover trash
