"""Start-up time of `corral` commands against bare Python, measured in the same run.

    python bench/startup.py [--repeat 40] [--src DIR]

Times (wall, median and minimum of --repeat rounds over all cases, from compiled bytecode as an installed
package starts) of `corral --help`, `corral status` on an empty root and on a root with one
finished task (table and --json), next to the peers `python -c pass` (the floor every
command pays) and `python -c "import click"` (the command-line library's own cost).
--src points PYTHONPATH at another checkout's src/ (e.g. an older commit) to compare.

Goals (issue 10): `corral status` on an empty root < 100 ms, `corral --help` < 80 ms.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import bytecode_env


def timed(cases: dict[str, list[str]], env: dict[str, str], repeat: int) -> dict[str, list[float]]:
    """Round robin over the cases, so that a burst of load elsewhere hits them all alike."""
    for argv in cases.values():
        subprocess.run(argv, env=env, capture_output=True, check=True)  # warm the caches once
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, argv in cases.items():
            start = time.perf_counter()
            subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - start)
    return times


def cpu(argv: list[str], env: dict[str, str], repeat: int) -> float:
    """Median CPU time (user + sys) of one run: less sensitive to other load than wall time."""
    spent = []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        spent.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(spent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--src", type=Path, default=Path(__file__).parent.parent / "src")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="corral-startup-") as tmp:
        work = Path(tmp)
        env = dict(os.environ, PYTHONPATH=str(args.src.absolute()))
        env = bytecode_env(work, env)
        empty, one = work / "empty", work / "one"
        empty.mkdir()
        corral = [sys.executable, "-m", "corral"]
        subprocess.run([*corral, "--root", str(one), "simplerun", "--id", "t1", "--", "true"], env=env,
                       capture_output=True, check=True)  # fmt: skip
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            'python -c "import click"': [sys.executable, "-c", "import click"],
            "corral --help": [*corral, "--help"],
            "corral status (empty root)": [*corral, "--root", str(empty), "status"],
            "corral status (1 task)": [*corral, "--root", str(one), "status"],
            "corral status --json (1 task)": [*corral, "--root", str(one), "status", "--json"],
        }
        load = os.getloadavg()[0]
        results = timed(cases, env, args.repeat)
        cpus = {name: cpu(argv, env, max(5, args.repeat // 3)) for name, argv in cases.items()}
    print(f"start-up: wall time of {args.repeat} runs each, src {args.src}")
    print(f"host: {platform.node()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
          f"load average {load:.2f} before, {os.getloadavg()[0]:.2f} after")  # fmt: skip
    floor = statistics.median(results["python -c pass"])
    print(f"{'command':32} {'median ms':>10} {'min ms':>8} {'- python ms':>12} {'CPU ms':>7}")
    for name, times in results.items():
        median = statistics.median(times)
        print(
            f"{name:32} {median * 1000:10.1f} {min(times) * 1000:8.1f} {(median - floor) * 1000:12.1f}"
            f" {cpus[name] * 1000:7.1f}"
        )
    help_ms = statistics.median(results["corral --help"]) * 1000
    status_ms = statistics.median(results["corral status (empty root)"]) * 1000
    verdict = {True: "meets", False: "misses"}
    print(f"\ncorral --help        {help_ms:5.0f} ms  (goal < 80 ms: {verdict[help_ms < 80]})")
    print(f"corral status, empty {status_ms:5.0f} ms  (goal < 100 ms: {verdict[status_ms < 100]})")


if __name__ == "__main__":
    main()
