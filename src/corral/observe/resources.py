"""CPU and memory of each live run's process tree (psutil), for the task page and the API.

A run is identified by (pid, start time) as everywhere in corral: a pid reused by another
process is not reported. CPU percentages need two samples; psutil.Process objects are kept
between requests so the second request measures the interval since the first, and a run seen
for the first time is sampled over a short interval.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil

from corral.core.task import TaskRuntime
from corral.supervisor import proc

FIRST_SAMPLE = 0.1  # seconds, only when a process is seen for the first time


class Sampler:
    def __init__(self) -> None:
        self._known: dict[tuple[int, float], psutil.Process] = {}
        self._lock = threading.Lock()

    def _process(self, pid: int) -> tuple[psutil.Process, bool]:
        p = psutil.Process(pid)
        key = (pid, p.create_time())
        with self._lock:
            known = self._known.get(key)
            if known is not None:
                return known, False
            self._known[key] = p
            if len(self._known) > 4096:  # forget the oldest half; they are probably gone
                for old in list(self._known)[:2048]:
                    del self._known[old]
        return p, True

    def sample_runtimes(self, runtimes: dict[int, TaskRuntime], wait: bool = True) -> dict[str, Any]:
        """CPU and memory of the live runs of `runtimes`. A process seen for the first time is
        measured over FIRST_SAMPLE seconds; with `wait` False it shows 0 % CPU until the next
        call instead (a supervisor's loop must not sleep)."""
        trees: list[tuple[Any, list[psutil.Process]]] = []
        fresh = False
        for job, rt in runtimes.items():
            for run in rt.live_runs():
                if not run.pid or proc.start_ticks(run.pid) != run.start_ticks:
                    continue
                try:
                    top = psutil.Process(run.pid)
                    members = [top, *top.children(recursive=True)]
                except psutil.Error:
                    continue
                tree = []
                for member in members:
                    try:
                        p, new = self._process(member.pid)
                        if new:
                            p.cpu_percent(None)  # the first call only starts the measurement
                    except psutil.Error:
                        continue
                    fresh |= new
                    tree.append(p)
                trees.append(((job, run.process, run.run, run.pid), tree))
        if fresh and wait:
            time.sleep(FIRST_SAMPLE)
        return self._measure(trees)

    def _measure(self, trees: list[tuple[Any, list[psutil.Process]]]) -> dict[str, Any]:
        runs = []
        for (job, process, number, pid), tree in trees:
            cpu = 0.0
            rss = 0
            for p in tree:
                try:
                    cpu += p.cpu_percent(None)
                    rss += p.memory_info().rss
                except psutil.Error:
                    continue
            runs.append(
                {
                    "job": job,
                    "process": process,
                    "run": number,
                    "pid": pid,
                    "processes": len(tree),
                    "cpu_percent": round(cpu, 1),
                    "rss": rss,
                }
            )
        return {
            "runs": runs,
            "cpu_percent": round(sum(r["cpu_percent"] for r in runs), 1),
            "rss": sum(r["rss"] for r in runs),
        }
