"""A live supervisor compacts its journal past `journal.compact_at`: a process restarted forever
keeps its journal under the threshold and its fold bounded; a crash at each step of a
compaction leaves one whole journal and loses nothing; `read` shows the checkpoint as one line;
`keep_history` keeps the old journals and `gc --what history` removes them.

The 100,000-run version of the daemon test is bench/soak_compaction.py (figures in
BENCHMARKS.md); the suite runs RUNS runs with the same assertions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

RUNS = 1000
THRESHOLD = 32 * 1024
# past the threshold by at most what one turn commits (a few records of a few runs)
SLACK = 16 * 1024


def _daemon(name: str, threshold: int, cmd: str = "true", extra: str = "") -> str:
    return (
        f"name: {name}\n"
        f"journal: {{compact_at: {threshold}{extra}}}\n"
        "processes:\n"
        "  - name: p\n"
        f"    cmd: '{cmd}'\n"
        "    daemon: true\n"
        "    max_failures: 0\n"
    )


def _runs(corral, task_id: str) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """(runs so far, runs kept in the fold, the last run's number)"""
    view = corral.view(task_id)
    if view is None or not view.get("processes"):
        return 0, 0, -1
    p = view["processes"][0]
    last = p["runs"][-1]["run"] if p["runs"] else -1
    return p.get("runs_dropped", 0) + len(p["runs"]), len(p["runs"]), last


def _kill(corral, task_id: str, proc: subprocess.Popen[str]) -> None:  # type: ignore[no-untyped-def]
    corral("kill", task_id, check=True)
    proc.communicate(timeout=120)
    assert corral.status(task_id)["state"] == "KILLED"


def test_a_daemon_restarted_forever_keeps_its_journal_under_the_threshold(corral, spec_file) -> None:  # type: ignore[no-untyped-def]
    spec = spec_file(_daemon("forever", THRESHOLD))
    proc = corral.start("run", str(spec), "--id", "d", "-q")
    journal = corral.root / "d" / "journal"
    biggest = 0

    def enough() -> bool:
        nonlocal biggest
        if journal.exists():
            biggest = max(biggest, journal.stat().st_size)
        assert proc.poll() is None, proc.communicate()
        total, kept, _ = _runs(corral, "d")
        assert kept <= 100
        return total >= RUNS

    corral.wait_for(enough, timeout=900, interval=0.2)
    assert biggest <= THRESHOLD + SLACK, biggest
    assert (
        (corral.root / "d" / "checkpoint").stat().st_size < THRESHOLD
        if (corral.root / "d" / "checkpoint").exists()
        else True
    )
    lines = corral("read", "d", check=True).stdout.splitlines()
    compacted = [line for line in lines if "compacted:" in line]
    assert len(compacted) == 1 and " records up to " in compacted[0], lines[:3]
    assert "opened task d" in lines[0] and "compacted:" in lines[1]
    raw = corral("read", "d", "--raw", check=True).stdout.splitlines()
    assert "compacted:" in raw[1] and "(part 1 of 1)" in raw[1] and "\\x" not in raw[1]
    as_json = [json.loads(line) for line in corral("read", "d", "--json", check=True).stdout.splitlines()]
    assert as_json[1]["type"] == "Compacted" and "data" not in as_json[1]
    records = int(compacted[0].split("compacted: ")[1].split()[0])
    assert records > RUNS  # three records per run at least, most of them compacted away
    _kill(corral, "d", proc)
    total, kept, last = _runs(corral, "d")
    assert total == last + 1 and kept == 100  # every run counted, the last 100 kept
    assert journal.stat().st_size <= THRESHOLD + SLACK
    assert not Path(str(journal) + ".compact").exists()
    assert not (corral.root / "d" / "history").exists()
    # the reapers' ledger is rewritten with the journal: the lines since, not two per run ever
    assert (corral.root / "d" / "reaper.log").stat().st_size < THRESHOLD


def _ledger_runs(ledger: Path) -> list[int]:
    return [int(line) for line in ledger.read_text().split()] if ledger.exists() else []


@pytest.mark.parametrize("point", ["compact-write", "compact-synced", "compact-renamed"])
def test_a_crash_at_each_step_of_a_compaction_leaves_one_whole_journal(  # type: ignore[no-untyped-def]
    corral, spec_file, tmp_path: Path, point: str
) -> None:
    ledger = tmp_path / "ledger"
    spec = spec_file(_daemon("crashy", 4096, f"echo $CORRAL_RUN >> {ledger}"))
    proc = corral.start("run", str(spec), "--id", "c", "-q", env={"CORRAL_CRASH": f"{point}:2"})
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL, err
    journal = corral.root / "c" / "journal"
    leftover = Path(str(journal) + ".compact")
    # one whole journal: every reader reads it, and it knows every run that really started
    started = _ledger_runs(ledger)
    total, _, last = _runs(corral, "c")
    assert started and last >= max(started), (started[-3:], last)
    read = corral("read", "c", check=True).stdout.splitlines()
    assert "compacted:" in read[1]  # the first compaction went through
    assert leftover.exists() == (point != "compact-renamed")
    # recovery drops the leftover and carries on, compacting again
    proc = corral.start("recover", "c")
    corral.wait_for(lambda: _runs(corral, "c")[0] >= total + 200, timeout=600)
    assert not leftover.exists()
    _kill(corral, "c", proc)
    started = _ledger_runs(ledger)
    assert len(started) == len(set(started)), "a run started twice"
    total, _, last = _runs(corral, "c")
    assert last >= max(started) and total == last + 1
    assert journal.stat().st_size <= 4096 + SLACK


@pytest.mark.parametrize("point", ["ledger-write", "ledger-synced", "ledger-renamed"])
def test_a_crash_at_each_step_of_a_ledger_rewrite_loses_no_run(  # type: ignore[no-untyped-def]
    corral, spec_file, tmp_path: Path, point: str
) -> None:
    spec = spec_file(_daemon("ledgered", 4096))
    proc = corral.start("run", str(spec), "--id", "l", "-q", env={"CORRAL_CRASH": f"{point}:3"})
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL, err
    ledger = corral.root / "l" / "reaper.log"
    assert Path(str(ledger) + ".compact").exists() == (point != "ledger-renamed")
    total, _, _ = _runs(corral, "l")
    # the run live at the crash ended with its reaper watching: recovery finds its end
    proc = corral.start("recover", "l")
    corral.wait_for(lambda: _runs(corral, "l")[0] >= total + 200, timeout=600)
    corral("kill", "l", check=True)
    _, err = proc.communicate(timeout=120)
    assert ", 0 lost" in err, err
    assert all(run["state"] != "LOST" for run in corral.view("l")["processes"][0]["runs"])
    assert not Path(str(ledger) + ".compact").exists()
    assert ledger.stat().st_size < 4096 + SLACK


def test_keep_history_keeps_the_old_journals_until_gc_removes_them(corral, spec_file) -> None:  # type: ignore[no-untyped-def]
    spec = spec_file(_daemon("kept", 4096, extra=", keep_history: true"))
    proc = corral.start("run", str(spec), "--id", "k", "-q")
    history = corral.root / "k" / "history"
    corral.wait_for(lambda: history.exists() and len(os.listdir(history)) >= 3, timeout=600)
    _kill(corral, "k", proc)
    kept = sorted(os.listdir(history))
    assert all(name.startswith("journal.") for name in kept)
    out = json.loads(corral("gc", "k", "--what", "history", "--json", check=True).stdout)
    assert [r["id"] for r in out["removed"]] == ["k"] and out["freed_bytes"] > 0
    assert not history.exists()
    assert corral.status("k")["state"] == "KILLED"  # the journal stays


@pytest.mark.parametrize(
    ("journal", "path"),
    [
        ("{compact_at: 10}", "journal.compact_at"),
        ("{compact_at: lots}", "journal.compact_at"),
        ("{compact_records: 3}", "journal.compact_records"),
        ("{keep_history: maybe}", "journal.keep_history"),
        ("{compact_after: 1MB}", "journal"),
        ("12", "journal"),
    ],
)
def test_bad_journal_settings_are_one_line(corral, spec_file, journal: str, path: str) -> None:  # type: ignore[no-untyped-def]
    spec = spec_file(f"name: bad\njournal: {journal}\nprocesses:\n  - name: p\n    cmd: 'true'\n")
    result = corral("run", str(spec), "--id", "bad", "-q")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and path in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert not (corral.root / "bad").exists()


def test_readers_of_a_compacted_journal_start_from_a_checkpoint_of_the_new_file(corral, spec_file) -> None:  # type: ignore[no-untyped-def]
    spec = spec_file(_daemon("ckpt", 300 * 1024))  # compacted, then the checkpoint is written after
    proc = corral.start("run", str(spec), "--id", "x", "-q")
    ckpt = corral.root / "x" / "checkpoint"
    journal = corral.root / "x" / "journal"

    def compacted_then_checkpointed() -> bool:
        assert proc.poll() is None
        return ckpt.exists() and "compacted:" in corral("read", "x").stdout.split("\n", 2)[1]

    corral.wait_for(compacted_then_checkpointed, timeout=900, interval=0.5)
    _kill(corral, "x", proc)
    from corral.supervisor import checkpoints
    from corral.supervisor.layout import Layout
    from corral.supervisor.session import replay

    layout = Layout(corral.root, "x")
    loaded = checkpoints.load(layout)
    assert loaded is not None and loaded.journal_inode == journal.stat().st_ino
    folded = checkpoints.fold_journal(layout)
    replayed, _ = replay(layout)
    assert folded.jobs[0].processes["p"].runs == replayed.jobs[0].processes["p"].runs
    assert folded.compacted == replayed.compacted > 0


def test_an_ensemble_compacted_while_it_runs_and_grows_ends_as_it_would_have(  # type: ignore[no-untyped-def]
    corral, spec_file, gate
) -> None:
    g = gate()
    spec = spec_file(
        "name: ens\n"
        "journal: {compact_at: 4096}\n"
        "params: {i: {range: [120]}}\n"
        "retries: 1\n"
        "retry_backoff: 0\n"
        "job_limit: 4\n"
        "job:\n"
        f"  cmd: '[ {{{{params.i}}}} -ne 0 ] || {{ {g.cmd}; exit 0; }}; exit $(( {{{{params.i}}}} % 7 == 0 ))'\n"
    )
    proc = corral.start("run", str(spec), "--id", "e", "-q")

    def compacted() -> bool:
        assert proc.poll() is None
        lines = corral("read", "e").stdout.splitlines()
        return len(lines) > 1 and "compacted:" in lines[1] and corral.status("e")["jobs"]["pending"] == 0

    corral.wait_for(compacted, timeout=600, interval=0.3)
    submitted = corral("submit", "--ensemble", "e", "--set", "i=500", "--json")
    assert submitted.returncode == 0, submitted.stderr
    corral.wait_for(lambda: corral.status("e")["jobs"]["running"] <= 1, timeout=600)
    g.release()
    proc.communicate(timeout=300)
    rows = json.loads(corral("status", "e", "--jobs", "--json", check=True).stdout)[0]["job_list"]
    assert len(rows) == 121 and str(rows[-1]["params"]["i"]) == "500"
    for row in rows:
        failed = int(row["params"]["i"]) % 7 == 0 and int(row["params"]["i"]) != 0  # 0: the gated one
        assert row["state"] == ("FAILED" if failed else "SUCCESS"), row
        assert row["exit_code"] == (1 if failed else 0), row
    assert corral.status("e")["state"] == "FAILED"
