"""Replay: records/s of a full read + fold of a large ensemble journal (issue 11: >= 500,000/s).

    python bench/replay.py [--jobs 110000] [--repeat 5] [--profile]

The journal is made the way a real one is: a real `corral run` of a small ensemble (SAMPLE jobs,
each writing its parameter to a file in its job directory) gives the record mix, which is then
written again through the real writer (JournalWriter, group commits of 64 records) for --jobs
jobs, each job's records copied from a sample job with the job number and time shifted, after an
Opened record whose params cover every job: what an ensemble of that size writes (5 a job).

Timed in the same process, best of --repeat, on a warm page cache, as CPU time of this process
(process_time: on a shared machine, wall time measures the neighbours too):
  replay    session.replay(layout): read the file, check every frame, decode, fold (what
            `status --jobs`, `read` and `recover` do before anything else; the fold renders
            each job's task from the template once, as recovery must)
  scan      read + frame checks only (journal.read_journal)
  decode    scan + msgspec decode, no fold
  jsonl     peer: the same records as JSON lines, read and json.loads'd (no checks, no fold)
Ratios are against jsonl, measured in the same run. --profile prints a cProfile of one replay.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from corral.core.records import Opened, Record, decode, encode, to_json
from corral.journal import JournalWriter, read_journal
from corral.supervisor.layout import Layout
from corral.supervisor.session import replay

SAMPLE = 40
SPEC = """
name: sample
params: {{n: {{range: [0, {jobs}]}}}}
job_limit: 4
job: {{cmd: "echo {{{{params.n}}}} > {{{{job.dir}}}}/out"}}
"""


def sample_records(work: Path) -> list[Record]:
    """The records of a real `corral run` of a SAMPLE-job ensemble."""
    (work / "sample.yaml").write_text(SPEC.format(jobs=SAMPLE))
    root = work / "sample-root"
    argv = [sys.executable, "-m", "corral", "--root", str(root), "run", str(work / "sample.yaml")]
    subprocess.run([*argv, "--id", "sample", "-q"], check=True, capture_output=True)
    return [decode(p) for p in read_journal(root / "sample" / "journal").payloads]


def build(path: Path, records: list[Record], jobs: int) -> int:
    """Write a journal for `jobs` jobs with the sample's record mix; returns the record count."""
    opened = records[0]
    assert isinstance(opened, Opened)
    spec = dict(opened.spec, params={"n": {"range": [0, jobs]}})
    head = [msgspec.structs.replace(opened, spec=spec)]
    per_job: dict[int, list[Record]] = {}
    tail: list[Record] = []
    for rec in records[1:]:
        job = getattr(rec, "job", None)
        if isinstance(job, int) and job >= 0:
            per_job.setdefault(job, []).append(rec)
        elif not per_job:
            head.append(rec)
        else:
            tail.append(rec)  # the ensemble's own end
    count = 0
    with JournalWriter.open(path, create=True) as writer:
        batch = [encode(r) for r in head]
        for job in range(jobs):
            model = per_job[job % SAMPLE]
            shift = (job // SAMPLE) * 0.5
            for rec in model:
                batch.append(encode(msgspec.structs.replace(rec, job=job, at=rec.at + shift)))  # type: ignore[type-var]
            if len(batch) >= 64:
                writer.append_many(batch)
                writer.commit()
                count += len(batch)
                batch = []
        batch += [encode(r) for r in tail]
        writer.append_many(batch)
        count += len(batch)
    return count


def best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--jobs", type=int, default=110_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="corral-replay-") as tmp:
        work = Path(tmp)
        records = sample_records(work)
        layout = Layout(work / "root", "big")
        layout.dir.mkdir(parents=True)
        count = build(layout.journal, records, args.jobs)
        size = os.path.getsize(layout.journal)
        jsonl = work / "records.jsonl"
        with open(jsonl, "w") as f:
            for payload in read_journal(layout.journal).payloads:
                f.write(json.dumps(to_json(decode(payload))) + "\n")

        def decode_only() -> None:
            for p in read_journal(layout.journal).payloads:
                decode(p)

        def jsonl_peer() -> None:
            with open(jsonl) as f:
                for line in f:
                    json.loads(line)

        figures = {
            "replay": best(lambda: replay(layout), args.repeat),
            "scan": best(lambda: read_journal(layout.journal), args.repeat),
            "decode": best(decode_only, args.repeat),
            "jsonl": best(jsonl_peer, args.repeat),
        }
        sup, _ = replay(layout)
        print(f"journal: {count:,} records, {size / 1e6:.1f} MB, {args.jobs:,} jobs ({sup.state.value})")
        print(f"{'':8} {'seconds':>8} {'records/s':>12} {'x jsonl':>8}")
        for name, seconds in figures.items():
            ratio = figures["jsonl"] / seconds
            print(f"{name:8} {seconds:8.3f} {count / seconds:12,.0f} {ratio:8.2f}")
        goal = count / figures["replay"] >= 500_000
        print(f"goal >= 500,000 records/s for replay: {'met' if goal else 'NOT met'}")
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(replay, layout)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
