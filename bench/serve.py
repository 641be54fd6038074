"""Load on `corral serve`: 1,000 finished tasks and a live 10,000-job ensemble under one root,
20 clients polling the task list and a page of the ensemble's jobs for 30 s.

Reports list and job-page latency (median, p99), the server's peak RSS, and the live
ensemble's throughput (jobs ended per second) against the same ensemble run just before
without the server and its clients; the peer is `corral status --json` over the same root.
Goals (issue 12): list median < 50 ms, p99 < 300 ms, RSS < 200 MB, throughput drop < 10 %.

    python bench/serve.py [--tasks 1000] [--jobs 10000] [--clients 20] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bytecode_env

from corral.core.records import Opened, decode, encode
from corral.journal import HEADER, encode_frame, read_journal

TASK = """
name: small
processes:
  - {name: setup, cmd: "true"}
  - {name: main, cmd: "echo hello", after: [setup]}
"""
ENSEMBLE = """
name: live
job:
  cmd: sleep 0.05
params:
  i: {{range: [0, {jobs}]}}
job_limit: 8
"""


def corral(root: Path, env: dict[str, str], *args: str, check: bool = True) -> str:
    argv = [sys.executable, "-m", "corral", "--root", str(root), *args]
    return subprocess.run(argv, env=env, check=check, capture_output=True, text=True).stdout


def clone_tasks(root: Path, env: dict[str, str], work: Path, count: int) -> None:
    """One real finished task, then count-1 journals that differ only in their id (cheap and
    the same bytes to fold as the real one)."""
    (work / "task.yaml").write_text(TASK)
    corral(root, env, "run", str(work / "task.yaml"), "--id", "task-0000", "-q")
    payloads = read_journal(root / "task-0000" / "journal").payloads
    first = decode(payloads[0])
    assert isinstance(first, Opened)
    for n in range(1, count):
        task_id = f"task-{n:04d}"
        (root / task_id).mkdir(mode=0o700)
        opened = msgspec.structs.replace(first, id=task_id)
        frames = [encode_frame(encode(opened))] + [encode_frame(p) for p in payloads[1:]]
        (root / task_id / "journal").write_bytes(HEADER + b"".join(frames))
        (root / task_id / "journal.lock").write_bytes(b"")


def ended(root: Path, env: dict[str, str], task_id: str) -> int:
    view = json.loads(corral(root, env, "status", task_id, "--json"))[0]
    jobs = view["jobs"]
    return int(jobs["succeeded"] + jobs["failed"] + jobs["killed"] + jobs["lost"])


def start_ensemble(root: Path, env: dict[str, str], work: Path, task_id: str, jobs: int) -> None:
    (work / "live.yaml").write_text(ENSEMBLE.format(jobs=jobs))
    corral(root, env, "run", str(work / "live.yaml"), "--id", task_id, "--detach")
    deadline = time.time() + 30
    while ended(root, env, task_id) == 0:
        if time.time() > deadline:
            raise SystemExit(f"{task_id} did not start")
        time.sleep(0.2)


def throughput(root: Path, env: dict[str, str], task_id: str, seconds: float, during: Any = None) -> float:
    before, start = ended(root, env, task_id), time.time()
    if during is not None:
        during()
    else:
        time.sleep(seconds)
    return (ended(root, env, task_id) - before) / (time.time() - start)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def client_loop(
    url: str, live: str, total: int, until: float, interval: float, out: dict[str, list[float]]
) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        await asyncio.sleep(random.uniform(0, interval))  # independent pollers are not in step
        while time.time() < until:
            began = time.perf_counter()
            answer = await http.get("/api/v1/tasks")
            out["list"].append(time.perf_counter() - began)
            assert answer.status_code == 200 and len(answer.content) > 1000
            offset = random.randrange(0, max(1, total - 100))
            t = time.perf_counter()
            page = await http.get(f"/api/v1/tasks/{live}/jobs", params={"offset": offset, "limit": 100})
            out["jobs"].append(time.perf_counter() - t)
            assert page.status_code == 200
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - began)))


def load(
    url: str, live: str, total: int, clients: int, seconds: float, interval: float
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"list": [], "jobs": []}
    until = time.time() + seconds

    async def all_clients() -> None:
        await asyncio.gather(*(client_loop(url, live, total, until, interval, out) for _ in range(clients)))

    asyncio.run(all_clients())
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=1.0, help="each client's polling period (s)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="corral-bench-serve-"))
    root = work / "root"
    root.mkdir()
    env = bytecode_env(work)
    try:
        run(args, work, root, env)
    finally:
        for task_id in ("base", "live"):
            if (root / task_id).exists():
                corral(root, env, "lose", task_id, check=False)
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path, root: Path, env: dict[str, str]) -> None:
    clone_tasks(root, env, work, args.tasks)
    peer = []
    for _ in range(3):
        t = time.perf_counter()
        corral(root, env, "status", "--json")
        peer.append(time.perf_counter() - t)

    start_ensemble(root, env, work, "base", args.jobs)
    base_rate = throughput(root, env, "base", args.seconds)
    corral(root, env, "lose", "base")

    start_ensemble(root, env, work, "live", args.jobs)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "corral", "--root", str(root), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                httpx.get(url + "/static/corral.js", timeout=1)  # folds nothing: the first list is cold
                break
            except httpx.HTTPError:
                if time.time() > deadline:
                    raise SystemExit("corral serve did not start") from None
                time.sleep(0.1)
        t = time.perf_counter()
        httpx.get(url + "/api/v1/tasks", timeout=120)
        cold = time.perf_counter() - t
        proc = psutil.Process(server.pid)
        rss: list[int] = []
        results: dict[str, list[float]] = {}

        def during() -> None:
            import threading

            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.25):
                    rss.append(proc.memory_info().rss)

            sampler = threading.Thread(target=sample)
            sampler.start()
            results.update(load(url, "live", args.jobs, args.clients, args.seconds, args.interval))
            stop.set()
            sampler.join()

        live_rate = throughput(root, env, "live", args.seconds, during)
    finally:
        server.terminate()
        server.wait(timeout=30)
    report(args, peer, cold, results, rss, base_rate, live_rate)


def report(
    args: argparse.Namespace,
    peer: list[float],
    cold: float,
    results: dict[str, list[float]],
    rss: list[int],
    base_rate: float,
    live_rate: float,
) -> None:
    lst, jobs = results["list"], results["jobs"]
    drop = (1 - live_rate / base_rate) * 100 if base_rate else 0.0
    status = statistics.median(peer) * 1000
    print(f"serve: {args.tasks} finished tasks + a live {args.jobs}-job ensemble (sleep 0.05, 8 at a time)")
    print(
        f"host: {os.cpu_count()} cpus, Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{args.clients} clients, each polling the task list and a 100-job page every {args.interval:g} s "
        f"for {args.seconds:g} s"
    )
    print(f"first list (folds every journal once): {cold * 1000:.0f} ms")
    print(
        f"task list   ({len(lst)} requests): median {pct(lst, 0.5):6.1f} ms  p99 {pct(lst, 0.99):6.1f} ms"
        f"   (goal < 50 / < 300)"
    )
    print(
        f"job page    ({len(jobs)} requests): median {pct(jobs, 0.5):6.1f} ms  p99 {pct(jobs, 0.99):6.1f} ms"
    )
    print(f"server RSS: peak {max(rss) / 2**20:.0f} MB   (goal < 200)")
    print(
        f"ensemble throughput: {base_rate:.1f} jobs/s alone, {live_rate:.1f} jobs/s under load: "
        f"drop {drop:.1f} %   (goal < 10)"
    )
    print(
        f"peer: corral status --json over the same root: median {status:.0f} ms; "
        f"served list median / status = {pct(lst, 0.5) / status:.3f}"
    )


if __name__ == "__main__":
    main()
