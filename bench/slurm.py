"""Slurm: N one-second jobs through corral (job arrays) and through one `sbatch --wrap` per job.

    python bench/slurm.py [--jobs 1000] [--poll 1.0] [--root DIR] [--only corral|sbatch]

Needs the local Slurm (scripts/slurm-up.sh; `CORRAL_SLURM_CPUS=16 bash scripts/slurm-up.sh`
lets 16 one-second jobs run at once on a small machine). Both ways run `sleep 1` N times:

* corral: `corral run` of an ensemble with `backend: slurm`: one `sbatch --array` for all jobs,
  one batched `squeue` per poll interval; on the node, `corral slurm-job` supervises each job
  and keeps its journal (the exit code comes from there). Timed from the start of `corral run`
  (interpreter start-up included) to its exit; "submitted" is when the journal's last
  Submitted record was written. Commands: the launcher notes its own counts in the journal
  ("slurm commands: sbatch=.. squeue=.."), plus the one `sbatch --test-only` that `corral run`
  issues to check the spec before recording anything.
* sbatch per job: what launchers that submit job by job do: N x `sbatch --wrap 'sleep 1'`, then
  one `squeue --name` per poll interval (batched, the cheapest way to wait) until all ended.
  Timed from the first sbatch; every command counted.

Python bytecode: corral's node-side supervisor is a Python process per job, so its start-up
matters. Installed packages have their bytecode compiled; a checkout run with
PYTHONDONTWRITEBYTECODE=1 (as in some sandboxes) recompiles corral at every start. By default
the corral run gets a bytecode cache under the bench's temp dir (PYTHONPYCACHEPREFIX, warmed
once, nothing written into the source tree); --no-bytecode-cache keeps the environment as it is.

Goal (issue 5): corral >= 5 x faster to submit, and never more than one squeue per poll interval.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from common import bytecode_env

TERMINAL = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "OUT_OF_MEMORY",
    "BOOT_FAIL", "DEADLINE", "REVOKED",
}  # fmt: skip


@dataclass
class Result:
    name: str
    submit: float  # seconds until every job was handed to Slurm
    finished: float  # seconds until every job had ended
    commands: dict[str, int] = field(default_factory=dict)
    ok: int = 0  # jobs that succeeded
    polls_per_interval: float = 0.0  # squeue calls / (run time / poll interval)

    @property
    def total(self) -> int:
        return sum(self.commands.values())


def cluster() -> str:
    out = subprocess.run(["sinfo", "-h", "-o", "%C %P"], capture_output=True, text=True, check=True)
    cpus = sum(int(line.split()[0].split("/")[3]) for line in out.stdout.splitlines())
    return f"{cpus} CPUs advertised"


def wait_idle(name_prefix: str, timeout: float = 600) -> None:
    """Wait until no job of ours is queued or running (so one run does not slow the next)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True, check=True)
        if not [n for n in out.stdout.split() if n.startswith(name_prefix)]:
            return
        time.sleep(1)
    raise SystemExit("the queue did not drain")


# -- corral ------------------------------------------------------------------------------------


def corral_env(work: Path, bytecode_cache: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CORRAL_TASK_ID", None)
    return bytecode_env(work, env) if bytecode_cache else env


def run_corral(root: Path, jobs: int, poll: float, env: dict[str, str]) -> Result:
    spec = root / "bench.yaml"
    spec.write_text(
        "name: bench\n"
        "backend: slurm\n"
        f"slurm: {{poll_interval: {poll}}}\n"
        "job:\n"
        "  cmd: sleep 1\n"
        "params:\n"
        f"  i: {{range: [0, {jobs}]}}\n"
    )
    run_id = f"bench-{uuid.uuid4().hex[:6]}"
    cmd = [sys.executable, "-m", "corral", "--root", str(root), "run", str(spec), "--id", run_id, "-q"]
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    finished = time.time() - start
    if proc.returncode != 0:
        raise SystemExit(f"corral run failed ({proc.returncode}): {proc.stderr.strip()}")
    out = subprocess.run(
        [sys.executable, "-m", "corral", "--root", str(root), "read", run_id, "--raw", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    records = [json.loads(line) for line in out.stdout.splitlines()]
    subs = [r for r in records if r["type"] == "Submitted"]
    notes = [r["text"] for r in records if r["type"] == "Note" and r["text"].startswith("slurm commands:")]
    commands = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", notes[-1])} if notes else {}
    commands["sbatch"] = commands.get("sbatch", 0) + 1  # the sbatch --test-only of `corral run`
    status = subprocess.run(
        [sys.executable, "-m", "corral", "--root", str(root), "status", run_id, "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    ok = json.loads(status.stdout)[0]["jobs"]["succeeded"]
    opened = records[0]["at"]
    ended = records[-1]["at"]
    return Result(
        "corral (arrays)",
        submit=max(r["at"] for r in subs) - start,
        finished=finished,
        commands=commands,
        ok=ok,
        polls_per_interval=commands.get("squeue", 0) / max(1.0, (ended - opened) / poll),
    )


# -- one sbatch per job ------------------------------------------------------------------------


def run_sbatch(jobs: int, poll: float) -> Result:
    name = f"benchwrap-{uuid.uuid4().hex[:6]}"
    commands = {"sbatch": 0, "squeue": 0}
    ids: list[str] = []
    start = time.time()
    for _ in range(jobs):
        proc = subprocess.run(
            ["sbatch", "--parsable", f"--job-name={name}", "--output=/dev/null", "--wrap=sleep 1"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        commands["sbatch"] += 1
        if proc.returncode != 0:
            raise SystemExit(f"sbatch failed: {proc.stderr.strip()}")
        ids.append(proc.stdout.strip().split(";")[0])
    submitted = time.time() - start
    states: dict[str, str] = {}
    while True:
        out = subprocess.run(
            ["squeue", "-h", "--states=all", f"--name={name}", "-o", "%i %T"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        commands["squeue"] += 1
        states = dict(line.split() for line in out.stdout.splitlines() if line.strip())
        # a job slurmctld has already forgotten (MinJobAge) has ended too
        if all(states.get(i, "COMPLETED") in TERMINAL for i in ids):
            break
        time.sleep(poll)
    finished = time.time() - start
    ok = sum(1 for i in ids if states.get(i, "COMPLETED") == "COMPLETED")
    return Result(
        "sbatch per job",
        submit=submitted,
        finished=finished,
        commands=commands,
        ok=ok,
        polls_per_interval=commands["squeue"] / max(1.0, (finished - submitted) / poll),
    )


# -- report ------------------------------------------------------------------------------------


def table(results: list[Result], jobs: int, poll: float, bytecode_cache: bool) -> str:
    lines = [
        f"Slurm: {jobs} one-second jobs (sleep 1), local single-node Slurm ({cluster()}), "
        f"poll interval {poll:g} s, {os.cpu_count()} real CPUs, "
        f"bytecode {'cached' if bytecode_cache else 'as the environment has it'}",
        "",
        f"{'':<17}{'submit s':>10}{'finished s':>12}{'sbatch':>8}{'squeue':>8}{'other':>7}"
        f"{'commands':>10}{'ok':>7}{'squeue/poll':>13}",
    ]
    for r in results:
        other = r.total - r.commands.get("sbatch", 0) - r.commands.get("squeue", 0)
        lines.append(
            f"{r.name:<17}{r.submit:>10.2f}{r.finished:>12.1f}{r.commands.get('sbatch', 0):>8}"
            f"{r.commands.get('squeue', 0):>8}{other:>7}{r.total:>10}{r.ok:>7}{r.polls_per_interval:>13.2f}"
        )
    by = {r.name: r for r in results}
    c, s = by.get("corral (arrays)"), by.get("sbatch per job")
    if c and s:
        lines += [
            "",
            f"submit: corral {s.submit / c.submit:.1f} x faster; all finished: corral "
            f"{s.finished / c.finished:.2f} x the speed of sbatch-per-job; "
            f"Slurm commands: {s.total / c.total:.1f} x fewer with corral",
        ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--poll", type=float, default=1.0, help="poll interval of both, seconds")
    ap.add_argument("--root", type=Path, default=None, help="corral root (default: a temp dir)")
    ap.add_argument("--only", choices=("corral", "sbatch"), default=None)
    ap.add_argument("--no-bytecode-cache", dest="bytecode_cache", action="store_false")
    args = ap.parse_args()
    if shutil.which("sbatch") is None:
        raise SystemExit("no sbatch on PATH: start a local Slurm with scripts/slurm-up.sh")
    work = Path(tempfile.mkdtemp(prefix="corral-bench-slurm-")) if args.root is None else args.root
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        if args.only in (None, "corral"):
            wait_idle("benchwrap-")
            env = corral_env(work, args.bytecode_cache)
            results.append(run_corral(work, args.jobs, args.poll, env))
            print(f"corral done in {results[-1].finished:.1f} s", file=sys.stderr)
        if args.only in (None, "sbatch"):
            wait_idle("corral-bench-")
            results.append(run_sbatch(args.jobs, args.poll))
            print(f"sbatch per job done in {results[-1].finished:.1f} s", file=sys.stderr)
    finally:
        if args.root is None:
            shutil.rmtree(work, ignore_errors=True)
    print(table(results, args.jobs, args.poll, args.bytecode_cache))


if __name__ == "__main__":
    main()
