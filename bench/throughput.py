"""Throughput: N trivial jobs with 4 at a time, through corral, xargs and GNU parallel.

    python bench/throughput.py [--jobs 5000] [--repeat 3] [--limit 4] [--root DIR]
                               [--skip TOOL] [--compare LABEL=SRC]

Every tool runs /bin/true N times, 4 at a time, and is timed from the shell command's start to
its exit (process start-up included: `corral run` is the normal CLI path, with every state change
fdatasync'd to the journal; `parallel` writes a --joblog). The three run back to back in each
repetition, in a rotating order, so that load from elsewhere on the machine spreads over all of
them; the figure per tool is the median of the repetitions, and the ratios are taken from the
medians. Goal (issue 4): corral >= 0.7 x xargs and >= 3 x GNU parallel. The CPU time of each
run (the whole process tree, jobs included) is shown too, and for corral split between the
supervisor and its jobs: on 2 cores every tool is CPU-bound, so jobs/s ~ CPU busy x 2 / CPU per job.
--compare before=DIR adds corral run from another source tree (PYTHONPATH=DIR) to the rotation.
corral starts from compiled bytecode, as an installed package does (bench/common.py: a cache
under the run's directory, warmed once, even where PYTHONDONTWRITEBYTECODE=1 is set).

corral makes 3 inodes per job (the job's directory, its stdout and stderr files), so its figure
depends on the filesystem's inode allocation. On ext4 without a journal, an inode freed in the
last few minutes is skipped, one by one, when a new one is allocated: a directory where many
files were deleted recently (a busy /tmp, or the previous repetition's 15,000 inodes) can make
each mkdir 3x dearer. Hence: runs go under ~/.cache/corral-bench by default (--root to change),
nothing is deleted before the last repetition, and the output shows the mkdir and fdatasync cost
measured in the same place just before.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import bytecode_env

TRUE = "/bin/true"


def default_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "corral-bench"
    base.mkdir(parents=True, exist_ok=True)
    return base


def probe_fs(work: Path, count: int = 500) -> tuple[float, float]:
    """Microseconds per mkdir and per 100-byte append + fdatasync, in `work`."""
    probe = work / "probe"
    probe.mkdir()
    start = time.perf_counter()
    for i in range(count):
        os.mkdir(probe / str(i))
    mkdir_us = (time.perf_counter() - start) / count * 1e6
    fd = os.open(probe / "sync", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        start = time.perf_counter()
        for _ in range(count):
            os.write(fd, b"x" * 100)
            os.fdatasync(fd)
        sync_us = (time.perf_counter() - start) / count * 1e6
    finally:
        os.close(fd)
    return mkdir_us, sync_us


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


CPU: dict[str, list[float]] = {}  # tool -> CPU seconds (user + sys) of each run, jobs included


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(
    cmd: str | list[str], tool: str, *, shell: bool = False, env: dict[str, str] | None = None
) -> float:
    """Wall seconds of one run; its CPU time (the whole process tree's) goes to CPU[tool]."""
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, shell=shell, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    elapsed = time.perf_counter() - start
    CPU.setdefault(tool, []).append(_children_cpu() - cpu)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {cmd}\n{proc.stderr.decode(errors='replace')}")
    return elapsed


SUPERVISOR: dict[str, list[float]] = {}  # corral variant -> the supervisor's own CPU seconds


ENVS: dict[str, dict[str, str]] = {}  # corral variant -> its environment (bytecode cache warmed)


def run_corral(work: Path, spec: Path, rep: int, label: str, src: str | None) -> float:
    """Like timed(), but also splits the CPU time between the supervisor and its jobs: once
    the supervisor has exited, and before it is reaped, /proc/PID/stat still holds both."""
    # the run's files stay until the end: deleting 15,000 inodes now would slow the next
    # run's mkdirs (ext4 skips recently freed inodes, see the module docstring)
    root = work / f"{label}-{rep}"
    env = ENVS.get(label)
    if env is None:
        base = dict(os.environ, PYTHONPATH=src) if src is not None else None
        env = ENVS[label] = bytecode_env(work, base)
    errors = work / f"{label}-{rep}.stderr"
    cpu = _children_cpu()
    with open(errors, "wb") as err:  # a file, not a pipe: nobody reads while it runs
        start = time.perf_counter()
        proc = subprocess.Popen(corral_cmd(root, spec, "tp"), env=env, stdout=subprocess.DEVNULL, stderr=err)
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped yet
        elapsed = time.perf_counter() - start
        fields = Path(f"/proc/{proc.pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
        own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        proc.wait()
    CPU.setdefault(label, []).append(_children_cpu() - cpu)
    SUPERVISOR.setdefault(label, []).append(own)
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed ({proc.returncode}): {errors.read_text(errors='replace')}")
    if not (root / "tp" / "journal").exists():
        raise SystemExit(f"{label} left no journal under {root}")
    return elapsed


def run_xargs(work: Path, jobs: int, limit: int, rep: int) -> float:
    return timed(f"seq {jobs} | xargs -P {limit} -n 1 {TRUE}", "xargs", shell=True)


def run_parallel(work: Path, jobs: int, limit: int, rep: int) -> float:
    joblog = work / f"parallel-{rep}.joblog"
    elapsed = timed(f"seq {jobs} | parallel -j {limit} --joblog {joblog} {TRUE} {{}}", "parallel", shell=True)
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
    ap.add_argument("--root", help="where the runs' files go (default: ~/.cache/corral-bench)")
    ap.add_argument("--skip", action="append", default=[], choices=["corral", "xargs", "parallel"])
    ap.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="LABEL=SRC",
        help="also run corral from another source tree (PYTHONPATH=SRC), e.g. before=/tmp/old/src",
    )
    args = ap.parse_args()
    if shutil.which("parallel") is None and "parallel" not in args.skip:
        raise SystemExit("GNU parallel is not installed (or pass --skip parallel)")

    work = Path(tempfile.mkdtemp(prefix="run-", dir=args.root or default_root()))
    spec = work / "throughput.yaml"
    write_spec(spec, args.jobs, args.limit)
    tools = {
        "corral": lambda rep: run_corral(work, spec, rep, "corral", None),
        "xargs": lambda rep: run_xargs(work, args.jobs, args.limit, rep),
        "parallel": lambda rep: run_parallel(work, args.jobs, args.limit, rep),
    }
    for item in args.compare:
        label, _, src = item.partition("=")
        if not src:
            raise SystemExit(f"--compare {item}: expected LABEL=SRC")
        tools[label] = lambda rep, label=label, src=src: run_corral(work, spec, rep, label, src)
    order = [t for t in tools if t not in args.skip]
    times: dict[str, list[float]] = {t: [] for t in order}
    load_before = os.getloadavg()
    try:
        mkdir_us, sync_us = probe_fs(work)
        for rep in range(args.repeat):
            rotated = order[rep % len(order) :] + order[: rep % len(order)]
            for tool in rotated:
                elapsed = tools[tool](rep)
                times[tool].append(elapsed)
                line = f"{args.jobs / elapsed:8.0f} jobs/s  ({elapsed:.2f} s)"
                print(f"  rep {rep + 1}/{args.repeat}  {tool:<8} {line}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rate = {t: args.jobs / statistics.median(ts) for t, ts in times.items()}
    print()
    print(f"throughput: {args.jobs} jobs of {TRUE}, {args.limit} at a time, median of {args.repeat}")
    print(
        f"host: {platform.node()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
        f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    print(
        f"filesystem at {work.parent}: mkdir {mkdir_us:.0f} us, 100-byte append + fdatasync {sync_us:.0f} us"
    )
    print("  corral:   corral run SPEC -q (every state change fdatasync'd, group commit)")
    print(f"  xargs:    seq N | xargs -P {args.limit} -n 1 {TRUE}")
    print(f"  parallel: seq N | parallel -j {args.limit} --joblog FILE {TRUE} {{}}")
    print()
    ncpu = os.cpu_count() or 1
    print(f"{'tool':<10}{'jobs/s':>10}{'median s':>10}{'CPU ms/job':>12}{'CPU busy':>10}   runs (jobs/s)")
    for tool, ts in times.items():
        runs = " ".join(f"{args.jobs / t:.0f}" for t in ts)
        cpu = statistics.median(CPU[tool])
        busy = cpu / (statistics.median(ts) * ncpu)
        print(
            f"{tool:<10}{rate[tool]:>10.0f}{statistics.median(ts):>10.2f}"
            f"{cpu / args.jobs * 1e3:>12.2f}{busy:>10.0%}   {runs}"
        )
    print(f"(CPU: user + sys of the whole process tree, jobs included; busy: CPU / (wall x {ncpu} cpus))")
    for label, own in SUPERVISOR.items():
        own_ms = statistics.median(own) / args.jobs * 1e3
        jobs_ms = statistics.median(CPU[label]) / args.jobs * 1e3 - own_ms
        print(
            f"{label}: the supervisor process {own_ms:.2f} ms/job (start-up included), "
            f"its reaper and jobs ({TRUE}) {jobs_ms:.2f} ms/job"
        )
    if "corral" in rate:
        print()
        for other, goal in (("xargs", 0.7), ("parallel", 3.0)):
            if other in rate:
                ratio = rate["corral"] / rate[other]
                verdict = "meets" if ratio >= goal else "misses"
                print(f"corral / {other:<8} = {ratio:5.2f}   (goal >= {goal}: {verdict})")


if __name__ == "__main__":
    main()
