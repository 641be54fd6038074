"""Helpers of the tests against the real Slurm: what the CLI says of an ensemble (its raw
records, its jobs), what Slurm and the launcher say of its pilot workers, an ensemble spec on
pilot workers, and a launcher started in the background that a test cannot leave behind.

Ids carry a random suffix (`new_id`): worker jobs are named `corral-pilot-ID`, so a test only
looks at (and cancels, through conftest's `pilot_id`) its own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from corral.backends.slurm_client import SlurmClient
from corral.core.records import JobsAdded, decode
from corral.journal import lock_holder, read_journal


def new_id(base: str) -> str:
    return f"{base}-{uuid.uuid4().hex[:6]}"


def raw_records(corral, task_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    out = corral("read", task_id, "--raw", "--json", check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def job_list(corral, task_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    out = corral("status", task_id, "--jobs", "--json", check=True).stdout
    return json.loads(out)[0]["job_list"]


def pilot_spec(
    name: str, pilot: str, cmd: str, jobs: int, *, slurm: str = "", job: str = "", top: str = ""
) -> str:
    """An ensemble of JOBS jobs (`params.i` from 0) on pilot workers, polled every 0.5 s.

    pilot: the keys of `slurm.pilot` (`workers: 1, cpus: 2`); cmd: the job's shell lines;
    slurm, job, top: more lines under `slurm:`, under `job:`, and at the top (retries)."""

    def indented(text: str, by: str) -> str:
        return "".join(by + line + "\n" for line in text.strip().splitlines())

    return f"""name: {name}
backend: slurm
slurm:
  poll_interval: 0.5
{indented(slurm, "  ")}  pilot: {{{pilot}}}
{indented(top, "")}job:
{indented(job, "  ")}  cmd: |
{indented(cmd, "    ")}params:
  i: {{range: [0, {jobs}]}}
"""


@contextmanager
def launched(  # type: ignore[no-untyped-def]
    corral, spec: Path, task_id: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """`corral run SPEC` in the background (ENV added to its environment); if it is still
    running when the block leaves (a failed assertion), it is killed through `corral kill`, so
    its workers leave too."""
    launcher = corral.start("run", str(spec), "--id", task_id, "-q", env=env)
    try:
        yield launcher
    finally:
        if launcher.poll() is None:
            corral("kill", task_id)
            launcher.communicate(timeout=120)


def sigkill_launcher(corral, task_id: str, launcher: subprocess.Popen[str]) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL the supervisor that holds the journal (the launcher's, not the CLI parent's)."""
    pid = lock_holder(corral.root / task_id / "journal")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    launcher.wait(timeout=60)


def alive_workers(slurm: SlurmClient, task_id: str) -> list[str]:
    infos = slurm.squeue_named(f"corral-pilot-{task_id}")
    return sorted(i.job_id for i in infos.values() if not i.terminal)


def held_workers(slurm: SlurmClient, task_id: str) -> list[str]:
    infos = slurm.squeue_named(f"corral-pilot-{task_id}")
    return sorted({i.array_job_id or i.job_id for i in infos.values() if i.state.value == "PENDING"})


def workers_view(root: Path, task_id: str) -> list[dict]:
    """The launcher's workers.json: its workers as it sees them now ([] until it writes it)."""
    try:
        return list(json.loads((root / task_id / "pilot" / "workers.json").read_text())["workers"])
    except (OSError, ValueError, KeyError):
        return []


def handed_to(corral, task_id: str) -> dict[int, list[str]]:  # type: ignore[no-untyped-def]
    """job -> the workers it was handed to, in order (from the launcher's journal)."""
    out: dict[int, list[str]] = {}
    for rec in raw_records(corral, task_id):
        if rec["type"] == "Submitted":
            for job, ident in zip(rec["jobs"], rec["ids"], strict=True):
                out.setdefault(job, []).append(ident.removeprefix("pilot:"))
    return out


def ledger_rows(root: Path, task_id: str) -> list[dict]:
    """Every job a worker took, from the workers' ledgers (their JobsAdded rows)."""
    rows = []
    for journal in sorted((root / task_id / "pilot").glob("*_*/journal")):
        for payload in read_journal(journal).payloads:
            rec = decode(payload)
            if isinstance(rec, JobsAdded):
                rows.extend(dict(row, worker=journal.parent.name) for row in rec.params)
    return rows


def control_endpoint(task_dir: Path) -> tuple[str, int, str]:
    """The launcher's TCP control address and token: (host, port, token)."""
    host, port = (task_dir / "control.tcp").read_text().strip().removeprefix("tcp://").rsplit(":", 1)
    return host, int(port), (task_dir / "token").read_text().strip()


def fake_hello(token: str, worker: str, session: str = "fa4e") -> bytes:
    """The first line a pilot worker sends its launcher, as a fake worker would send it."""
    hello = {
        "op": "pilot",
        "token": token,
        "worker": worker,
        "host": "fake",
        "pid": 1,
        "cpus": 1,
        "memory": 0,
        "ends_at": 1e10,
        "session": session,
    }
    return json.dumps(hello).encode() + b"\n"


def answer_line(conn: socket.socket) -> bytes:
    """The launcher's answer to a hello (its first line)."""
    conn.settimeout(30)
    got = b""
    while b"\n" not in got and (chunk := conn.recv(1)):
        got += chunk
    return got
