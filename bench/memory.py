"""Memory and status latency of a launcher holding a 100,000-job ensemble.

    python bench/memory.py [--jobs 100000] [--limit 100] [--duration 25] [--job "sleep 0.5"]
                           [--finished] [--root DIR]

1. `corral run` of an ensemble of --jobs jobs (argv from --job, default `sleep 0.5`), --limit at
   a time. Its resident set (psutil, the `corral run` process only; the jobs are separate
   processes) is sampled every 0.1 s for --duration seconds, while `corral status ID --json`
   (answered from the status.json snapshot) and `corral status ID --jobs --json` (a replay of
   the whole journal) are timed every few seconds.
2. SIGINT, as Ctrl-C: the launcher stops launching and kills its running jobs gracefully; the
   time it takes to exit is reported, and both status commands are timed again on the killed
   ensemble (most of its 100,000 jobs never started).
3. With --finished, also a 100,000-job ensemble of /bin/true run to the end (a few minutes), and
   the status commands on it: the largest journal (five records per job).

Goals (issue 4): the launcher stays under 200 MB RSS; `status` answers in under a second.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def corral(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "corral", "--root", str(root), *args]


def write_spec(path: Path, argv: list[str], jobs: int, limit: int) -> None:
    path.write_text(
        "name: memory\n"
        "job:\n"
        f"  argv: {json.dumps(argv)}\n"
        "params:\n"
        f"  i: {{range: [0, {jobs}]}}\n"
        f"job_limit: {limit}\n"
    )


def time_status(root: Path, run_id: str, jobs: bool) -> tuple[float, dict | list]:
    cmd = corral(root, "status", run_id, "--json", *(["--jobs"] if jobs else []))
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"status failed: {proc.stderr.decode(errors='replace')}")
    return elapsed, json.loads(proc.stdout)


def counts_of(view: list) -> str:
    view0 = view[0]
    counts = view0.get("jobs") or {}
    shown = " ".join(f"{k}={v}" for k, v in counts.items() if isinstance(v, int) and v)
    return f"{view0.get('state')}: {shown}"


class Sampler:
    """Peak and last RSS of one process, and the peak of its reaper, sampled by the caller."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.reaper_peak = 0
        self.samples: list[tuple[float, int]] = []
        self.start = time.perf_counter()

    def sample(self) -> None:
        try:
            rss = self.proc.memory_info().rss
            children = self.proc.children()
        except psutil.NoSuchProcess:
            return
        self.peak = max(self.peak, rss)
        self.samples.append((time.perf_counter() - self.start, rss))
        for child in children:
            try:
                if any(part.endswith("reaper.py") for part in child.cmdline()):
                    self.reaper_peak = max(self.reaper_peak, child.memory_info().rss)
            except psutil.NoSuchProcess:
                continue


def mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def fmt_times(ts: list[float]) -> str:
    if not ts:
        return "-"
    return f"median {statistics.median(ts):.3f} s, max {max(ts):.3f} s ({len(ts)} calls)"


def live_phase(args: argparse.Namespace, work: Path) -> None:
    root = work / "live"
    spec = work / "live.yaml"
    argv = shlex.split(args.job)
    write_spec(spec, argv, args.jobs, args.limit)
    launcher = subprocess.Popen(
        corral(root, "run", str(spec), "--id", "mem", "-q"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    sampler = Sampler(launcher.pid)
    quick: list[float] = []
    full: list[float] = []
    started = time.perf_counter()
    next_status = started + 3.0
    while time.perf_counter() - started < args.duration:
        sampler.sample()
        if launcher.poll() is not None:
            raise SystemExit(f"the launcher ended early: {launcher.stderr.read().decode(errors='replace')}")
        now = time.perf_counter()
        if now >= next_status and (root / "mem" / "journal").exists():
            elapsed, _ = time_status(root, "mem", jobs=False)
            quick.append(elapsed)
            elapsed, _ = time_status(root, "mem", jobs=True)
            full.append(elapsed)
            next_status = time.perf_counter() + 4.0
            continue
        time.sleep(0.1)
    _, view = time_status(root, "mem", jobs=False)
    before_stop = counts_of(view)
    ran_for = time.perf_counter() - started
    journal_size = (root / "mem" / "journal").stat().st_size
    stop_at = time.perf_counter()
    launcher.send_signal(signal.SIGINT)
    while launcher.poll() is None:
        sampler.sample()
        time.sleep(0.05)
    stop_time = time.perf_counter() - stop_at
    after_quick, view = time_status(root, "mem", jobs=False)
    after_full, jobs_view = time_status(root, "mem", jobs=True)
    listed = len(jobs_view[0].get("job_list") or [])

    print(f"live: {args.jobs} jobs of {args.job!r}, job limit {args.limit}, for {ran_for:.0f} s, then SIGINT")
    print(f"  at SIGINT:                      {before_stop}; journal {mb(journal_size)}")
    print(
        f"  launcher RSS:                   peak {mb(sampler.peak)}, last {mb(sampler.samples[-1][1])}; "
        f"its reaper: peak {mb(sampler.reaper_peak)}"
        f" ({len(sampler.samples)} samples)"
    )
    print(f"  status ID --json, running:      {fmt_times(quick)}")
    print(f"  status ID --jobs --json, running: {fmt_times(full)}")
    print(f"  SIGINT to exit:                 {stop_time:.2f} s (exit status {launcher.returncode})")
    print(f"  after: {counts_of(view)}")
    print(f"  status ID --json, killed:       {after_quick:.3f} s")
    print(f"  status ID --jobs --json, killed: {after_full:.3f} s ({listed} jobs listed)")
    _rss_curve(sampler)


def _rss_curve(sampler: Sampler) -> None:
    """RSS at a few points in time: flat means memory does not grow with the jobs done."""
    points = [p for p in sampler.samples if p[0] >= 1.0]  # after start-up
    if len(points) < 5:
        return
    picks = [points[int(i * (len(points) - 1) / 5)] for i in range(6)]
    print(
        "  RSS over time:                  "
        + ", ".join(f"{t:.0f}s {r / 2**20:.0f}" for t, r in picks)
        + " (MB)"
    )


def finished_phase(args: argparse.Namespace, work: Path) -> None:
    root = work / "done"
    spec = work / "done.yaml"
    write_spec(spec, ["/bin/true"], args.jobs, args.limit)
    start = time.perf_counter()
    launcher = subprocess.Popen(
        corral(root, "run", str(spec), "--id", "done", "-q"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    sampler = Sampler(launcher.pid)
    while launcher.poll() is None:
        sampler.sample()
        time.sleep(0.2)
    elapsed = time.perf_counter() - start
    if launcher.returncode != 0:
        raise SystemExit(f"the finished run failed: {launcher.stderr.read().decode(errors='replace')}")
    journal_size = (root / "done" / "journal").stat().st_size
    quick, view = time_status(root, "done", jobs=False)
    full, _ = time_status(root, "done", jobs=True)
    print(
        f"finished: {args.jobs} jobs of /bin/true, job limit {args.limit}, ran to the end in {elapsed:.0f} s"
        f" ({args.jobs / elapsed:.0f} jobs/s)"
    )
    print(f"  {counts_of(view)}; journal {mb(journal_size)}")
    reaper = mb(sampler.reaper_peak)
    print(f"  launcher RSS:                   peak {mb(sampler.peak)}; its reaper: peak {reaper}")
    print(f"  status ID --json:               {quick:.3f} s")
    print(f"  status ID --jobs --json:        {full:.3f} s")
    _rss_curve(sampler)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--duration", type=float, default=25.0, help="seconds before SIGINT (default 25)")
    ap.add_argument("--job", default="sleep 0.5", help="each job's argv, shell-split (default 'sleep 0.5')")
    ap.add_argument("--finished", action="store_true", help="also run a whole ensemble of /bin/true")
    ap.add_argument("--root", help="where the runs' files go (default: ~/.cache/corral-bench)")
    args = ap.parse_args()
    base = Path(args.root) if args.root else Path.home() / ".cache" / "corral-bench"
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="memory-", dir=base))
    print(
        f"host: {platform.node()}, {os.cpu_count()} cpus, {mb(psutil.virtual_memory().total)} RAM, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}"
    )
    try:
        live_phase(args, work)
        if args.finished:
            finished_phase(args, work)
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
