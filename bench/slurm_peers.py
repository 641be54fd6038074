"""The peers of bench/slurm.py: one sbatch per job, one plain job array, HyperQueue.

Each returns a `Result` (bench/slurm_common.py). Timed from the first Slurm command to the
moment the last job was seen ended (polled with one batched squeue per interval, the cheapest
way to wait).

HyperQueue: its PyPI package (`pip install hyperqueue`) runs the server and a worker in one
process (`LocalCluster`); the `hq` binary itself is not needed. The bench runs it as HQ is
meant to run on a cluster: one 16-CPU Slurm job (`sbatch --wait`) in which the worker takes the
job's CPUs and runs the N tasks; its own timing (server up to all tasks done) is printed too.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

from slurm_common import PREFIX, Result, ended, fail, squeue_states


def run_sbatch(cmd: str, jobs: int, poll: float) -> Result:
    """One `sbatch --wrap` per job: what launchers that submit job by job do."""
    name = f"{PREFIX}wrap-{uuid.uuid4().hex[:6]}"
    commands = {"sbatch": 0, "squeue": 0}
    ids: list[str] = []
    start = time.time()
    for _ in range(jobs):
        proc = subprocess.run(
            ["sbatch", "--parsable", f"--job-name={name}", "--output=/dev/null", f"--wrap={cmd}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        commands["sbatch"] += 1
        if proc.returncode != 0:
            fail(f"sbatch failed: {proc.stderr.strip()}")
        ids.append(proc.stdout.strip().split(";")[0])
    submitted = time.time() - start
    states = wait_ended(name, ids, poll, commands)
    ok = sum(1 for i in ids if states.get(i, "COMPLETED") == "COMPLETED")
    return Result("sbatch per job", jobs, submitted, time.time() - start, ok, commands)


def run_array(cmd: str, jobs: int, poll: float) -> Result:
    """One plain `sbatch --array=0-(N-1) --wrap CMD`: no supervision, no journal, no retries."""
    name = f"{PREFIX}array-{uuid.uuid4().hex[:6]}"
    commands = {"sbatch": 1, "squeue": 0}
    start = time.time()
    proc = subprocess.run(
        ["sbatch", "--parsable", f"--job-name={name}", "--output=/dev/null",
         f"--array=0-{jobs - 1}", f"--wrap={cmd}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        fail(f"sbatch --array failed: {proc.stderr.strip()}")
    base = proc.stdout.strip().split(";")[0]
    ids = [f"{base}_{i}" for i in range(jobs)]
    submitted = time.time() - start
    states = wait_ended(name, ids, poll, commands)
    ok = sum(1 for i in ids if states.get(i, "COMPLETED") == "COMPLETED")
    return Result("job array", jobs, submitted, time.time() - start, ok, commands)


def wait_ended(name: str, ids: list[str], poll: float, commands: dict[str, int]) -> dict[str, str]:
    while True:
        states = squeue_states(name)
        commands["squeue"] += 1
        # a job slurmctld has already forgotten (MinJobAge) has ended too
        if all(ended(states.get(i)) for i in ids):
            return states
        time.sleep(poll)


# -- HyperQueue ----------------------------------------------------------------------------------


def hyperqueue_missing() -> str | None:
    """Why HyperQueue cannot run here, or None."""
    probe = subprocess.run(
        [sys.executable, "-c", "from hyperqueue import LocalCluster, Job"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"the hyperqueue package does not import ({last}); pip install hyperqueue"
    return None


def run_hyperqueue(cmd: str, jobs: int, cpus: int, work: Path) -> Result:
    """HyperQueue's server and one worker of CPUS cores inside one Slurm job of CPUS CPUs."""
    out = work / f"hq-{uuid.uuid4().hex[:6]}"
    out.mkdir(parents=True)
    inner = [sys.executable, str(Path(__file__).resolve()), "hq-inner", cmd, str(jobs), str(cpus), str(out)]
    wrap = " ".join(shlex.quote(a) for a in inner)
    start = time.time()
    proc = subprocess.run(
        ["sbatch", "--wait", "--parsable", f"--job-name={PREFIX}hq", f"--cpus-per-task={cpus}",
         f"--output={out / 'slurm.out'}", f"--chdir={out}", f"--wrap={wrap}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    finished = time.time() - start
    report = out / "result.json"
    if proc.returncode != 0 or not report.exists():
        log = out / "slurm.out"
        last = (log.read_text(errors="replace").strip().splitlines() or [""])[-1] if log.exists() else ""
        fail(f"HyperQueue in Slurm failed ({proc.returncode}): {proc.stderr.strip()} {last}")
    inner_result = json.loads(report.read_text())
    submit = inner_result["submitted"] + inner_result["queued_at"] - start
    note = f"inside its Slurm job: {inner_result['run']:.1f} s"
    return Result("HyperQueue (1 job)", jobs, submit, finished, inner_result["ok"], {"sbatch": 1}, note=note)


def hq_inner(cmd: str, jobs: int, cpus: int, out: Path) -> None:
    """Runs inside the Slurm job: server + worker in this process, N tasks, one wait."""
    from hyperqueue import Job, LocalCluster
    from hyperqueue.cluster import WorkerConfig

    queued_at = time.time()
    with LocalCluster(server_dir=str(out / "server")) as cluster:
        cluster.start_worker(WorkerConfig(cores=cpus))
        client = cluster.client()
        job = Job()
        for i in range(jobs):
            job.program(cmd.split(), stdout=out / f"{i}.stdout", stderr=out / f"{i}.stderr")
        began = time.time()
        submitted = client.submit(job)
        submit_s = time.time() - began
        ok = jobs if client.wait_for_jobs([submitted], raise_on_error=False) else 0
        run = time.time() - queued_at
    result = {"queued_at": queued_at, "submitted": submit_s, "run": run, "ok": ok}
    (out / "result.json").write_text(json.dumps(result))


def hq_rss_queued(queued: int, cpus: int, work: Path) -> float:
    """HyperQueue's RSS (server + worker + client, one process) with QUEUED tasks of `sleep 600`
    submitted (CPUS of them running); MB."""
    code = (
        "import resource, sys, time\n"
        "from hyperqueue import Job, LocalCluster\n"
        "from hyperqueue.cluster import WorkerConfig\n"
        f"with LocalCluster(server_dir={str(work / 'hq-rss')!r}) as c:\n"
        f"    c.start_worker(WorkerConfig(cores={cpus}))\n"
        "    cl = c.client(); job = Job()\n"
        f"    for i in range({queued}): job.program(['sleep', '600'], stdout=None, stderr=None)\n"
        "    cl.submit(job); time.sleep(3)\n"
        "    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
        "    sys.stdout.flush()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=600
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        fail(f"HyperQueue RSS probe failed: {(proc.stderr.strip().splitlines() or [''])[-1]}")
    return float(lines[-1])


if __name__ == "__main__" and sys.argv[1:2] == ["hq-inner"]:
    hq_inner(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5]))
