"""corral.Executor against process pools and task systems: 2,000 trivial calls, 4 at a time.

    python bench/executor.py [--calls 2000] [--tools corral,fork,ppe,parsl,dask,submitit,pynenc]

Each tool runs in its own Python process (same interpreter, bytecode cached), one after the
other, in this invocation; the table ends with corral's ratios to each. Measured:
- calls/s for N trivial calls (`f(x) = x`), at most 4 at a time (pools: their size);
- start-up: from nothing to ready to take calls; round trip: median of 30 sequential
  submit(f, x).result();
- corral only: a restarted driver (same id, same calls) getting the stored results; the
  driver's peak RSS with 10,000 calls queued at once.
Tools that are not installed are reported as such (pip install parsl "dask[distributed]"
submitit). pynenc needs Python >= 3.12: its process runner (SQLite backend, 4 invocations at a
time) runs under a 3.12 interpreter found at CORRAL_BENCH_PY312 or ~/.cache/corral-bench-py312
(`python3.12 -m venv ~/.cache/corral-bench-py312 && ~/.cache/corral-bench-py312/bin/pip install
pynenc==0.4.0`), driven by bench/peer_pynenc.py; without one it is skipped, saying why.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import bytecode_env

# Tools too slow for N calls in a benchmark (pynenc ~10-15 calls/s, submitit ~1): their rate
# from fewer calls, said on their line.
SMALL = {"submitit": 40, "pynenc": 200}


def noop(x: int) -> int:
    return x


def _rt(call: Callable[[int], Any]) -> float:
    samples = []
    for i in range(30):
        t = time.perf_counter()
        call(i)
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def run_corral(n: int, work: Path) -> dict[str, Any]:
    import corral

    root = work / "corral"
    ident = f"bench-{os.getpid()}"
    t = time.perf_counter()
    ex = corral.Executor(id=ident, root=root, max_workers=4)
    startup = time.perf_counter() - t
    ex.submit(noop, -1).result()  # the zygote starts on the first call
    rt = _rt(lambda i: ex.submit(noop, 10_000_000 + i).result())
    t = time.perf_counter()
    assert list(ex.map(noop, range(n))) == list(range(n))
    rate = n / (time.perf_counter() - t)
    ex.shutdown()
    with corral.Executor(id=ident, root=root, max_workers=4) as again:  # a restarted driver
        t = time.perf_counter()
        assert list(again.map(noop, range(n))) == list(range(n))
        stored = n / (time.perf_counter() - t)
    return {"rate": rate, "startup": startup, "rt": rt, "stored": stored, "memory": _queued(root)}


def _queued(root: Path) -> float:
    """Peak RSS (MB) of a driver that queues 10,000 calls at once (map: journaled in batches
    of 2,000, all queued before the first result is read), in a process of its own."""
    code = (
        "import resource, sys, corral\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from executor import noop\n"
        "with corral.Executor(id='queued', root=sys.argv[1], max_workers=4) as ex:\n"
        "    assert list(ex.map(noop, range(10_000))) == list(range(10_000))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(root), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the queued driver failed: {out.stderr[-2000:]}")
    return float(out.stdout.split()[-1])


def _child(conn: Any, x: int) -> None:
    conn.send(noop(x))
    conn.close()


def run_fork(n: int, work: Path) -> dict[str, Any]:
    """multiprocessing 'fork', one process per call, 4 alive; results through a pipe."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("fork")

    def one(x: int) -> Any:
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_child, args=(w, x))
        p.start()
        w.close()
        return p, r

    def call(x: int) -> int:
        p, r = one(x)
        value = r.recv()
        p.join()
        return int(value)

    rt = _rt(call)
    t = time.perf_counter()
    alive: dict[Any, Any] = {}
    results = []
    todo = iter(range(n))
    for x in todo:
        if len(alive) >= 4:
            for s in wait(list(alive)):
                p, r = alive.pop(s)
                results.append(r.recv())
                p.join()
        p, r = one(x)
        alive[p.sentinel] = (p, r)
    for p, r in alive.values():
        results.append(r.recv())
        p.join()
    assert sorted(results) == list(range(n))
    return {"rate": n / (time.perf_counter() - t), "startup": 0.0, "rt": rt}


def run_ppe(n: int, work: Path) -> dict[str, Any]:
    from concurrent.futures import ProcessPoolExecutor

    t = time.perf_counter()
    with ProcessPoolExecutor(2) as ex:
        ex.submit(noop, 0).result()
        startup = time.perf_counter() - t
        rt = _rt(lambda i: ex.submit(noop, i).result())
        t = time.perf_counter()
        assert list(ex.map(noop, range(n))) == list(range(n))
        rate = n / (time.perf_counter() - t)
    return {"rate": rate, "startup": startup, "rt": rt}


def run_parsl(n: int, work: Path) -> dict[str, Any]:
    import parsl
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    t = time.perf_counter()
    htex = HighThroughputExecutor(label="htex", max_workers_per_node=2, provider=LocalProvider())
    parsl.load(Config(executors=[htex], run_dir=str(work / "parsl")))
    app = parsl.python_app(noop)
    app(0).result()
    startup = time.perf_counter() - t
    rt = _rt(lambda i: app(i).result())
    t = time.perf_counter()
    futs = [app(i) for i in range(n)]
    assert [f.result() for f in futs] == list(range(n))
    rate = n / (time.perf_counter() - t)
    parsl.dfk().cleanup()
    return {"rate": rate, "startup": startup, "rt": rt}


def run_dask(n: int, work: Path) -> dict[str, Any]:
    from dask.distributed import Client, LocalCluster

    t = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    client.submit(noop, -1, pure=False).result()
    startup = time.perf_counter() - t
    rt = _rt(lambda i: client.submit(noop, i, pure=False).result())
    t = time.perf_counter()
    futs = client.map(noop, range(n), pure=False)
    assert client.gather(futs) == list(range(n))
    rate = n / (time.perf_counter() - t)
    client.close()
    cluster.close()
    return {"rate": rate, "startup": startup, "rt": rt}


def run_submitit(n: int, work: Path) -> dict[str, Any]:
    import submitit

    ex = submitit.LocalExecutor(folder=str(work / "submitit"))
    ex.update_parameters(timeout_min=10)
    t = time.perf_counter()
    ex.submit(noop, 0).result()
    rt = time.perf_counter() - t
    t = time.perf_counter()
    jobs = []
    results = []
    for i in range(n):  # 4 at a time
        jobs.append(ex.submit(noop, i))
        if len(jobs) == 4:
            results += [j.result() for j in jobs]
            jobs = []
    results += [j.result() for j in jobs]
    assert results == list(range(n))
    return {"rate": n / (time.perf_counter() - t), "startup": 0.0, "rt": rt}


PY312 = [
    os.environ.get("CORRAL_BENCH_PY312", ""),
    os.path.expanduser("~/.cache/corral-bench-py312/bin/python"),  # a venv with pynenc
]


def _py312_with_pynenc() -> str | None:
    for python in PY312:
        if python and os.path.exists(python):
            probe = subprocess.run(
                [python, "-c", "import sys, pynenc; assert sys.version_info >= (3, 12)"], capture_output=True
            )
            if probe.returncode == 0:
                return python
    return None


def run_pynenc(n: int, work: Path) -> dict[str, Any]:
    """pynenc's process runner with its SQLite backend, driven by bench/peer_pynenc.py under a
    Python >= 3.12 (pynenc's own requirement)."""
    python = _py312_with_pynenc()
    if python is None:
        raise ImportError(
            f"pynenc needs Python >= 3.12 (this is {sys.version.split()[0]}); make a venv with "
            "pynenc at ~/.cache/corral-bench-py312 or set CORRAL_BENCH_PY312"
        )
    peer = Path(__file__).parent / "peer_pynenc.py"
    out = subprocess.run([python, str(peer), str(n), str(work)], capture_output=True, text=True, timeout=1500)
    if out.returncode != 0:
        raise RuntimeError(f"the pynenc driver failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


TOOLS = {
    "corral": run_corral,
    "fork": run_fork,
    "ppe": run_ppe,
    "parsl": run_parsl,
    "dask": run_dask,
    "submitit": run_submitit,
    "pynenc": run_pynenc,
}
LABELS = {
    "corral": "corral.Executor (4 workers; isolated, durable)",
    "fork": "multiprocessing fork per call (4 alive)",
    "ppe": "ProcessPoolExecutor(2)",
    "parsl": "Parsl HighThroughputExecutor (2 workers)",
    "dask": "Dask LocalCluster (2 processes)",
    "submitit": "submitit LocalExecutor",
    "pynenc": "pynenc process runner (SQLite, 4 slots)",
}


def one_tool(tool: str, n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        try:
            calls = min(SMALL.get(tool, n), n)
            out = TOOLS[tool](calls, Path(tmp))
            out["calls"] = calls
        except ImportError as exc:
            out = {"missing": str(exc)}
    out["cpu"] = sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime for who in (0, -1))
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--tool", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tool:
        one_tool(args.tool, args.calls)
        return
    work = Path(tempfile.mkdtemp(prefix="corral-bench-env-"))
    env = bytecode_env(work)
    print(
        f"executor: {args.calls} trivial calls, 4 at a time; Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}"
    )
    results: dict[str, dict[str, Any]] = {}
    for tool in args.tools.split(","):
        proc = subprocess.run(
            [sys.executable, __file__, "--tool", tool, "--calls", str(args.calls)],
            capture_output=True,
            text=True,
            env=env,
            timeout=1800,
        )
        try:
            results[tool] = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            results[tool] = {"missing": f"failed: {proc.stderr.strip().splitlines()[-1:]}"}
        r = results[tool]
        if "missing" in r:
            print(f"  {LABELS[tool]:48s} not measured: {r['missing']}")
            continue
        extra = ""
        if tool == "corral":
            extra = (
                f"  restart: {r['stored']:,.0f} stored results/s; 10,000 queued: driver {r['memory']:.0f} MB"
            )
        if r["calls"] != args.calls:
            extra += f"  (only {r['calls']} calls: too slow for {args.calls})"
        print(
            f"  {LABELS[tool]:48s} {r['rate']:8.0f} calls/s ({r['calls']} calls)  start-up "
            f"{r['startup']:5.2f} s  round trip {r['rt'] * 1000:6.1f} ms{extra}"
        )
    print(f"load after: {os.getloadavg()[0]:.2f}")
    base = results.get("corral", {})
    if "rate" in base:
        goals = {"fork": 1.0, "pynenc": 20.0, "submitit": 60.0}
        for tool, r in results.items():
            if tool == "corral" or "rate" not in r:
                continue
            ratio = base["rate"] / r["rate"]
            goal = goals.get(tool)
            judged = f"   (goal >= {goal}: {'meets' if ratio >= goal else 'MISSES'})" if goal else ""
            print(f"corral / {tool:9s} = {ratio:6.2f}{judged}")
        print(
            f"start-up {base['startup']:.2f} s (goal < 0.5); round trip {base['rt'] * 1000:.1f} ms "
            f"(goal < 5); stored results {base['stored']:,.0f}/s (goal >= 2,000); "
            f"driver with 10,000 queued {base['memory']:.0f} MB (goal < 150)"
        )


if __name__ == "__main__":
    main()
