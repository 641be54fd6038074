"""Crash injection: SIGKILL the supervisor again and again, recover each time, and check that
every process ran exactly as the spec demands.

Each run writes its own ledger line when it really starts and when it really ends (with the
exit code it chose), so the test compares the journal with what actually happened:
- no run lost: every run the journal ended has a real start and end in the ledger, with the
  same exit code; a LOST run never started (its launch was recorded, the crash beat the spawn);
- no run started twice: every (process, run) starts at most once in the ledger;
- every process succeeded exactly once; failures are the real ones (the flaky process's first).
Kills come at random moments and at injected points: after the launch intent is durable but
before the spawn request (CORRAL_CRASH=spawn), right after the reaper was sent spawn requests,
before their pids are back (sent), after the reaper reported an exit but before it is recorded
(reap), with records buffered but not yet durable (commit), at each step of a compaction
of the journal (compact-write, compact-synced, compact-renamed) and of the rewrite of the
reapers' ledger that follows it (ledger-write, ledger-synced, ledger-renamed), while runs are
live and their reapers write to it.
"""

from __future__ import annotations

import collections
import os
import random
import re
import signal
import time
from pathlib import Path

import pytest

POINTS = [None, None, "spawn:1", "spawn:2", "sent:1", "sent:2", "reap:1", "reap:2", "commit:3"]
# the journal is compacted past 4 KiB (a few times per task): a kill in the middle of a compaction
# (the new file incomplete; synced, not renamed; renamed, the directory not synced) loses nothing
POINTS += ["compact-write:1", "compact-synced:1", "compact-renamed:1"]
# ... and of the ledger's rewrite after it: the ends of runs live meanwhile are still found
POINTS += ["ledger-write:1", "ledger-synced:1", "ledger-renamed:1"]


def _spec(ledger: str, marker_dir: str) -> str:
    def step(name: str, seconds: float, extra: str = "", code: str = "0") -> str:
        cmd = (
            f'echo "start $CORRAL_PROCESS $CORRAL_RUN" >> {ledger}; sleep {seconds}; '
            f'c={code}; echo "end $CORRAL_PROCESS $CORRAL_RUN $c" >> {ledger}; exit $c'
        )
        return f"  - name: {name}\n    cmd: '{cmd}'\n{extra}"

    flaky_code = f"$( [ -e {marker_dir}/flaky ] && echo 0 || (touch {marker_dir}/flaky; echo 1) )"
    parts = ["name: crashy", "max_failures: 1", "journal: {compact_at: 4096}", "processes:"]
    parts.append(step("setup", 0.2))
    for i, seconds in enumerate([0.4, 0.9, 1.6, 2.5, 0.3, 1.2]):
        parts.append(step(f"w{i}", seconds, "    after: [setup]\n"))
    parts.append(step("flaky", 0.3, "    after: [setup]\n    max_failures: 3\n", flaky_code))
    parts.append(step("c1", 0.8, "    after: [setup]\n"))
    parts.append(step("c2", 0.8, "    after: [c1]\n"))
    parts.append(step("c3", 0.8, "    after: [c2, w5]\n"))
    parts.append(step("fin", 0.1, "    final: true\n"))
    return "\n".join(parts) + "\n"


def _verify(view: dict, ledger_text: str) -> None:
    starts = collections.Counter()
    ends: dict[tuple[str, int], int] = {}
    for line in ledger_text.splitlines():
        fields = line.split()
        if fields[0] == "start":
            starts[(fields[1], int(fields[2]))] += 1
        else:
            ends[(fields[1], int(fields[2]))] = int(fields[3])
    assert all(n == 1 for n in starts.values()), f"a run started twice: {starts}"
    assert view["state"] == "SUCCESS", view
    for p in view["processes"]:
        name = p["name"]
        successes = [r for r in p["runs"] if r["state"] == "SUCCESS"]
        assert len(successes) == 1, (name, p["runs"])
        for r in p["runs"]:
            key = (name, r["run"])
            if r["state"] == "LOST":
                assert key not in starts, f"{key} is LOST but really started"
                continue
            assert key in starts and key in ends, f"{key} {r['state']} has no real start/end"
            assert r["exit_code"] == ends[key], (key, r, ends[key])
        failed = [r for r in p["runs"] if r["state"] == "FAILED"]
        assert len(failed) == (1 if name == "flaky" else 0), (name, p["runs"])


def _mark(journal: Path) -> tuple[int, int, int]:
    """What changes when a supervisor commits (a compaction replaces the file: a new inode)."""
    try:
        st = journal.stat()
    except FileNotFoundError:
        return (0, 0, 0)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@pytest.mark.slow
def test_crash_injection_harness(corral, spec_file, tmp_path, capsys):
    rng = random.Random(int(os.environ.get("CORRAL_CRASH_SEED", "20261123")))
    kills = 0
    counts = collections.Counter()
    points_hit = collections.Counter()
    tasks = 0
    while kills < 30:
        tasks += 1
        ledger = tmp_path / f"ledger{tasks}"
        marker_dir = tmp_path / f"markers{tasks}"
        marker_dir.mkdir()
        spec = spec_file(_spec(str(ledger), str(marker_dir)), name=f"crash{tasks}.yaml")
        task_id = f"crash{tasks}"
        journal = corral.root / task_id / "journal"
        proc = corral.start("run", str(spec), "--id", task_id, "-q")
        began = _mark(journal)
        deadline = time.time() + 600
        while True:
            assert time.time() < deadline, "the task did not finish"
            time.sleep(rng.uniform(0.05, 0.6))
            if proc.poll() is None and _mark(journal) == began:
                # nothing journaled since this supervisor started: on a loaded host its start
                # can take longer than any random delay, and killing it again and again would
                # starve the task; a kill waits for this supervisor's first commit
                continue
            if proc.poll() is not None:
                _, err = proc.communicate()
                m = re.search(r"(\d+) re-attached, (\d+) exit codes recovered, (\d+) lost", err)
                if m:
                    counts.update(
                        {"re-attached": int(m[1]), "exit codes recovered": int(m[2]), "LOST": int(m[3])}
                    )
                if proc.returncode in (0, 1, 3) and corral.status(task_id)["state"] in (
                    "SUCCESS",
                    "FAILED",
                    "KILLED",
                    "LOST",
                ):
                    break
                if proc.returncode == 2 and "run it again" in err:
                    # killed while the journal was being created: start the task again
                    proc = corral.start("run", str(spec), "--id", task_id, "-q")
                    began = _mark(journal)
                    continue
                # an injected crash point fired: that was a kill too
                assert proc.returncode == -signal.SIGKILL, (proc.returncode, err)
                kills += 1
            else:
                os.kill(proc.pid, signal.SIGKILL)
                _, err = proc.communicate()
                kills += 1
                m = re.search(r"(\d+) re-attached, (\d+) exit codes recovered, (\d+) lost", err)
                if m:
                    counts.update(
                        {"re-attached": int(m[1]), "exit codes recovered": int(m[2]), "LOST": int(m[3])}
                    )
            point = rng.choice(POINTS)
            env = {"CORRAL_CRASH": point} if point else {}
            if point:
                points_hit[point.split(":")[0]] += 1
            began = _mark(journal)
            if journal.exists():
                proc = corral.start("recover", task_id, env=env)
            else:  # killed before the journal existed: nothing to recover, start again
                proc = corral.start("run", str(spec), "--id", task_id, "-q", env=env)
        view = corral.status(task_id)
        _verify(view, ledger.read_text())
    with capsys.disabled():
        print(
            f"\ncrash harness: {kills} kills over {tasks} task(s); injected points {dict(points_hit)}; "
            + ", ".join(f"{k} {v}" for k, v in counts.items())
        )
    assert kills >= 30
    assert counts["re-attached"] > 0
