"""pynenc's process runner as a peer of bench/executor.py (needs Python >= 3.12 and pynenc).

    python3.12 bench/peer_pynenc.py CALLS WORKDIR

Configured as pynenc 0.4 documents it for one host: `PynencBuilder().sqlite(path)` (the
SQLite orchestrator, broker and state backend; the process runner refuses the memory ones)
and `.process_runner()` (one new process per invocation), with `runner_tuning` at the
builder's own defaults (0.01 s loop and result-wait sleeps, not the 0.1 s of a bare config)
and `min_parallel_slots=4`: the runner runs max(min_parallel_slots, cpu_count) invocations at
a time, so 4 here as for the other tools. Logging is kept to warnings, as corral writes no
line per call. The runner is started as a user would (`pynenc --app peer_pynenc.app runner
start`), in its own process; this driver submits and reads results.
Measured: start-up (runner launched -> first result back), round trip (median of 30
sequential `noop(x).result`), calls/s for CALLS calls submitted at once with
`noop.parallelize` (pynenc's batch submit) and read back as they end. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DB_VAR = "CORRAL_BENCH_PYNENC_DB"

if __name__ != "__main__":
    from pynenc.builder import PynencBuilder

    app = (
        PynencBuilder()
        .app_id("corral_bench")
        .sqlite(os.environ[DB_VAR])
        .process_runner()
        .runner_tuning(
            runner_loop_sleep_time_sec=0.01, invocation_wait_results_sleep_time_sec=0.01, min_parallel_slots=4
        )
        .logging_level("warning")
        .build()
    )

    @app.task
    def noop(x: int) -> int:
        return x


def _runner(here: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pynenc", "--app", "peer_pynenc.app", "runner", "start"],
            cwd=here,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def measure(n: int, work: Path) -> dict[str, Any]:
    here = Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=f"{here}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    t = time.perf_counter()
    runner = _runner(here, env, work / "runner.log")
    try:
        assert noop(-1).result == -1
        startup = time.perf_counter() - t
        samples = []
        for i in range(30):
            t = time.perf_counter()
            assert noop(10_000_000 + i).result == 10_000_000 + i
            samples.append(time.perf_counter() - t)
        t = time.perf_counter()
        group = noop.parallelize([(i,) for i in range(n)])
        assert sorted(group.results) == list(range(n))  # results come in the order calls end
        rate = n / (time.perf_counter() - t)
    finally:
        runner.send_signal(signal.SIGTERM)  # the runner stops its loop on SIGTERM
        try:
            runner.wait(timeout=60)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.wait()
    return {"rate": rate, "startup": startup, "rt": statistics.median(samples), "calls": n}


def main(argv: list[str]) -> None:
    print(json.dumps(measure(int(argv[0]), Path(argv[1]))))


if __name__ == "__main__":
    # pynenc refuses tasks defined in __main__ (its runner finds a task by module and name),
    # so the script imports itself as the module `peer_pynenc` and runs from there.
    os.environ[DB_VAR] = str(Path(sys.argv[2]) / "pynenc.sqlite")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import peer_pynenc

    peer_pynenc.main(sys.argv[1:])
