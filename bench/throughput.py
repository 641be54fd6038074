"""Throughput: N trivial jobs with 4 at a time, through corral, xargs and GNU parallel.

    python bench/throughput.py [--jobs 5000] [--repeat 3] [--limit 4] [--root DIR]

Every tool runs /bin/true N times, 4 at a time, and is timed from the shell command's start to
its exit (process start-up included: `corral run` is the normal CLI path, with every state change
fdatasync'd to the journal; `parallel` writes a --joblog). The three run back to back in each
repetition, in a rotating order, so that load from elsewhere on the machine spreads over all of
them; the figure per tool is the median of the repetitions, and the ratios are taken from the
medians. Goal (issue 4): corral >= 0.7 x xargs and >= 3 x GNU parallel.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRUE = "/bin/true"


def corral_cmd(root: Path, spec: Path, run_id: str) -> list[str]:
    return [sys.executable, "-m", "corral", "--root", str(root), "run", str(spec), "--id", run_id, "-q"]


def write_spec(path: Path, jobs: int, limit: int) -> None:
    path.write_text(
        "name: throughput\n"
        "job:\n"
        f"  argv: [{TRUE}]\n"
        "params:\n"
        f"  i: {{range: [0, {jobs}]}}\n"
        f"job_limit: {limit}\n"
    )


def timed(cmd: str | list[str], *, shell: bool = False, stdin: bytes | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, shell=shell, input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {cmd}\n{proc.stderr.decode(errors='replace')}")
    return elapsed


def run_corral(work: Path, spec: Path, jobs: int, rep: int) -> float:
    root = work / f"corral-{rep}"
    elapsed = timed(corral_cmd(root, spec, "tp"))
    journal = root / "tp" / "journal"
    if not journal.exists():
        raise SystemExit(f"corral left no journal at {journal}")
    shutil.rmtree(root, ignore_errors=True)  # 5,000 job directories: not in the next run's way
    return elapsed


def run_xargs(work: Path, jobs: int, limit: int, rep: int) -> float:
    return timed(f"seq {jobs} | xargs -P {limit} -n 1 {TRUE}", shell=True)


def run_parallel(work: Path, jobs: int, limit: int, rep: int) -> float:
    joblog = work / f"parallel-{rep}.joblog"
    elapsed = timed(f"seq {jobs} | parallel -j {limit} --joblog {joblog} {TRUE} {{}}", shell=True)
    lines = joblog.read_text().count("\n") - 1  # minus the header
    if lines != jobs:
        raise SystemExit(f"parallel logged {lines} jobs, expected {jobs}")
    joblog.unlink()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=5000, help="jobs per run (default 5000)")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions; the median is reported (default 3)")
    ap.add_argument("--limit", type=int, default=4, help="jobs at once (default 4)")
    ap.add_argument("--root", help="where corral's runs go (default: a temporary dir under /tmp)")
    ap.add_argument("--skip", action="append", default=[], choices=["corral", "xargs", "parallel"])
    args = ap.parse_args()
    if shutil.which("parallel") is None and "parallel" not in args.skip:
        raise SystemExit("GNU parallel is not installed (or pass --skip parallel)")

    work = Path(tempfile.mkdtemp(prefix="corral-bench-", dir=args.root))
    spec = work / "throughput.yaml"
    write_spec(spec, args.jobs, args.limit)
    tools = {
        "corral": lambda rep: run_corral(work, spec, args.jobs, rep),
        "xargs": lambda rep: run_xargs(work, args.jobs, args.limit, rep),
        "parallel": lambda rep: run_parallel(work, args.jobs, args.limit, rep),
    }
    order = [t for t in tools if t not in args.skip]
    times: dict[str, list[float]] = {t: [] for t in order}
    load_before = os.getloadavg()
    try:
        for rep in range(args.repeat):
            rotated = order[rep % len(order) :] + order[: rep % len(order)]
            for tool in rotated:
                elapsed = tools[tool](rep)
                times[tool].append(elapsed)
                print(f"  rep {rep + 1}/{args.repeat}  {tool:<8} {args.jobs / elapsed:8.0f} jobs/s  ({elapsed:.2f} s)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rate = {t: args.jobs / statistics.median(ts) for t, ts in times.items()}
    print()
    print(f"throughput: {args.jobs} jobs of {TRUE}, {args.limit} at a time, median of {args.repeat}")
    print(f"host: {platform.node()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
          f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    print("  corral:   corral run SPEC -q (every state change fdatasync'd, group commit)")
    print(f"  xargs:    seq N | xargs -P {args.limit} -n 1 {TRUE}")
    print(f"  parallel: seq N | parallel -j {args.limit} --joblog FILE {TRUE} {{}}")
    print()
    print(f"{'tool':<10}{'jobs/s':>10}{'median s':>10}   runs (jobs/s)")
    for tool, ts in times.items():
        runs = " ".join(f"{args.jobs / t:.0f}" for t in ts)
        print(f"{tool:<10}{rate[tool]:>10.0f}{statistics.median(ts):>10.2f}   {runs}")
    if "corral" in rate:
        print()
        for other, goal in (("xargs", 0.7), ("parallel", 3.0)):
            if other in rate:
                ratio = rate["corral"] / rate[other]
                verdict = "meets" if ratio >= goal else "misses"
                print(f"corral / {other:<8} = {ratio:5.2f}   (goal >= {goal}: {verdict})")


if __name__ == "__main__":
    main()
