"""How busy corral.Executor keeps its slots: the reaper's ledger of a map of trivial calls.

    python bench/executor_turnover.py [--calls 1000] [--workers 4]

Throughput on the shared 2-core hosts moves by 2-3 x with the load of others; what the
ledger (ROOT/ID/reaper.log: an S line when a call's process starts, an E line when it ends)
says about the slots moves less. For N calls of `f(x) = x` (bench/executor.py's `noop`):
- calls/s of the map (the executor already started and warm);
- turnover: from a call's end to the next call's start (E line to the next S line), median
  and p90: the time a slot that came free stays idle;
- a call's life (its S to its E line), median and p90;
- busy slots: the calls' lives summed over the map's span (at most --workers).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from executor import noop


def _ledger(path: Path, first_job: int) -> tuple[list[float], list[float], float]:
    """(turnovers, lives, span) of the jobs from `first_job` on, in seconds."""
    events: list[tuple[float, str]] = []
    starts: dict[tuple[str, str], float] = {}
    lives: list[float] = []
    for line in path.read_text().splitlines():
        f = line.split("\t")
        if f[0] not in ("S", "E") or int(f[1]) < first_job or f[4] == "0":
            continue  # another kind, a warm-up call, or withdrawn before it started (pid 0)
        at = float(f[-1])
        events.append((at, f[0]))
        if f[0] == "S":
            starts[f[1], f[3]] = at
        elif (f[1], f[3]) in starts:
            lives.append(at - starts[f[1], f[3]])
    events.sort()
    turnovers: list[float] = []
    ended: list[float] = []
    for at, kind in events:
        if kind == "E":
            ended.append(at)
        elif ended:
            turnovers.append(at - ended.pop(0))
    return turnovers, lives, events[-1][0] - events[0][0]


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[int(len(ordered) * 0.9)]
    return f"median {statistics.median(ordered) * 1e3:5.2f} ms, p90 {p90 * 1e3:5.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    opts = parser.parse_args()
    import corral

    with tempfile.TemporaryDirectory(prefix="corral-turnover-") as tmp:
        root, ident, warm = Path(tmp), f"turnover-{os.getpid()}", 20
        load = os.getloadavg()[0]
        with corral.Executor(id=ident, root=root, max_workers=opts.workers) as ex:
            assert list(ex.map(noop, range(warm))) == list(range(warm))  # started, module warm
            t = time.perf_counter()
            assert list(ex.map(noop, range(warm, warm + opts.calls))) == list(range(warm, warm + opts.calls))
            rate = opts.calls / (time.perf_counter() - t)
        turnovers, lives, span = _ledger(root / ident / "reaper.log", warm)
    print(f"executor turnover: {opts.calls} trivial calls, {opts.workers} workers; load {load:.2f}")
    print(f"  {rate:.0f} calls/s; busy slots {sum(lives) / span:.2f} of {opts.workers}")
    print(f"  turnover (a call's end to the next start): {_ms(turnovers)}")
    print(f"  a call's life (start to end):             {_ms(lives)}")
    print(f"load after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
