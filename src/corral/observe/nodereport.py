"""CPU and memory of a Slurm job's runs, measured on its node and read by the observer.

The runs of a Slurm job are on a compute node, where the observer cannot see their pids. The
node's supervisor (`corral slurm-job`) therefore measures them itself with the observer's
Sampler and writes the figures into its node directory (ROOT/ID/slurm/JOB/SLURM_ID/live.json,
the shared file system the journal is on) every INTERVAL seconds while it runs. The observer
reads that file for each live job (`remote_resources`). Figures older than STALE are not shown
(the node's supervisor is gone or stuck).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from corral.core.supervision import Supervision
from corral.observe.resources import Sampler
from corral.supervisor import safefs
from corral.supervisor.nodes import LIVE_FILE, live_resources

INTERVAL = 2.0  # seconds between two measurements on the node
STALE = 30.0  # figures older than this are not shown


class NodeReporter:
    """Writes the node's live.json from the supervisor's own loop (no thread touches the fold):
    a ticker thread only wakes the loop through a pipe every INTERVAL."""

    def __init__(self, where: Path, interval: float = INTERVAL) -> None:
        self.path = where / LIVE_FILE
        self.interval = interval
        self.sampler = Sampler()
        self.host = socket.gethostname()
        self.at = 0.0
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        self._stop = threading.Event()
        self._registered = False

    def start(self, engine: Any) -> None:
        """Report on every turn of `engine` (rate-limited), and make it turn every INTERVAL."""
        engine.on_turn = lambda sup: self.turn(engine, sup)
        threading.Thread(target=self._tick, name="node-report", daemon=True).start()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError):  # a full pipe: the loop has a wake-up already
                os.write(self._write_fd, b".")

    def _drain(self) -> None:
        with contextlib.suppress(OSError):
            os.read(self._read_fd, 4096)

    def turn(self, engine: Any, sup: Supervision) -> None:
        if not self._registered:  # the loop exists only once the engine runs
            engine.watch(self._read_fd, self._drain)
            self._registered = True
        now = time.time()
        if now - self.at < self.interval:
            return
        self.at = now
        live = {job: rt for job, rt in sup.jobs.items() if rt.live_runs()}
        figures = self.sampler.sample_runtimes(live, wait=False)
        self.write({**figures, "host": self.host, "updated_at": now})

    def write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            safefs.write_file(tmp, json.dumps(data).encode(), safefs.file_mode(self.path.parent))
            os.replace(tmp, self.path)

    def stop(self) -> None:
        """The task ended: no live run is left to show."""
        self._stop.set()
        self.write({"runs": [], "cpu_percent": 0.0, "rss": 0, "host": self.host, "updated_at": time.time()})
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def remote_resources(task_dir: Path, sup: Supervision, now: float) -> dict[str, Any]:
    """The figures the nodes of the live jobs of `sup` (a Slurm task or ensemble) last wrote,
    in the shape of Sampler.sample_runtimes, each run with its job number here and its host."""
    runs: list[dict[str, Any]] = []
    for job in sorted(sup.live):
        ident = sup.submitted.get(job)
        data = live_resources(task_dir, job, ident) if ident is not None else None
        if data is None or now - float(data.get("updated_at", 0.0)) > STALE:
            continue
        for run in data.get("runs", []):
            if isinstance(run, dict):
                runs.append({**run, "job": job, "host": data.get("host")})
    return {
        "runs": runs,
        "cpu_percent": round(sum(float(r.get("cpu_percent", 0.0)) for r in runs), 1),
        "rss": sum(int(r.get("rss", 0)) for r in runs),
    }
