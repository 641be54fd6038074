"""corral's two ways onto Slurm in bench/slurm.py: `backend: slurm` (one sbatch array, one
supervisor per job on the node) and pilot workers (`slurm: {pilot: {...}}`: a few worker jobs
that take the jobs from the launcher over TCP).

Timed from the start of `corral run` (interpreter start-up included) to its exit; "submitted"
is when the journal's last Submitted record was written (arrays) or the run's start (pilot).
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from slurm_common import PREFIX, Result, fail, made_under

# The pilot block the bench uses; --pilot overrides it (a YAML flow mapping) while the
# spelling of the pilot's fields settles. {cpus}: --cpus (default: the advertised CPUs).
Completed = subprocess.CompletedProcess[str]
PILOT = "{{workers: 1, max_workers: 1, cpus: {cpus}, time: 1800, idle_timeout: 30}}"


def corral(root: Path, env: dict[str, str], *args: str, check: bool = True) -> Completed:
    return subprocess.run(
        [sys.executable, "-m", "corral", "--root", str(root), *args],
        capture_output=True, text=True, check=check, env=env,
    )  # fmt: skip


def spec_text(cmd: str, jobs: int, poll: float, pilot: str | None, shell: bool = True) -> str:
    """shell=False: the job is `argv:` (cmd's words, no /bin/sh), as HyperQueue runs a program."""
    slurm = f"poll_interval: {poll}" + (f", pilot: {pilot}" if pilot else "")
    # quoted: YAML reads a bare true as a boolean
    line = f"  cmd: '{cmd}'\n" if shell else f"  argv: {json.dumps(cmd.split())}\n"
    return (
        f"name: bench\nbackend: slurm\nslurm: {{{slurm}}}\njob:\n{line}params:\n  i: {{range: [0, {jobs}]}}\n"
    )


def pilot_missing(root: Path, env: dict[str, str], pilot: str) -> str | None:
    """Why corral here has no pilot workers (None: it has): `corral worker` must exist and a
    spec with the pilot block must pass `corral inspect`."""
    probe = corral(root, env, "worker", "--help", check=False)
    if probe.returncode != 0:
        return "this corral has no `corral worker` command (the pilot core of issue 14 has not landed)"
    spec = root / f"probe-{uuid.uuid4().hex[:6]}.yaml"
    spec.write_text(spec_text("true", 1, 1.0, pilot))
    check = corral(root, env, "inspect", str(spec), check=False)
    if check.returncode != 0:
        return f"`corral inspect` refuses the pilot block {pilot}: {last_line(check.stderr)}"
    return None


def run_corral(
    root: Path,
    cmd: str,
    jobs: int,
    poll: float,
    env: dict[str, str],
    pilot: str | None,
    shell: bool = True,
    name: str = "",
) -> Result:
    spec = root / f"bench-{uuid.uuid4().hex[:6]}.yaml"
    spec.write_text(spec_text(cmd, jobs, poll, pilot, shell))
    run_id = f"{PREFIX}{uuid.uuid4().hex[:6]}"
    workers = CpuSampler(run_id) if pilot else None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    proc = corral(root, env, "run", str(spec), "--id", run_id, "-q", check=False)
    finished = time.time() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    launcher_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if proc.returncode != 0:
        fail(f"corral run failed ({proc.returncode}): {last_line(proc.stderr)}")
    read = corral(root, env, "read", run_id, "--raw", "--json")
    records = [json.loads(line) for line in read.stdout.splitlines()]
    subs = [r["at"] for r in records if r["type"] == "Submitted"]
    notes = [r["text"] for r in records if r["type"] == "Note" and r["text"].startswith("slurm commands:")]
    commands = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", notes[-1])} if notes else {}
    commands["sbatch"] = commands.get("sbatch", 0) + 1  # the sbatch --test-only of `corral run`
    ok = json.loads(corral(root, env, "status", run_id, "--json").stdout)[0]["jobs"]["succeeded"]
    submit = (max(subs) if subs else records[0]["at"]) - start
    note = ""
    if workers is not None:  # CPU per job: comparable across loads, unlike the wall time
        own, helpers, runs = (x / jobs * 1000 for x in workers.stop())
        done = ("SUCCESS", "FAILED")
        ends = [r["at"] for r in records if r["type"] == "Transition" and r.get("state") in done]
        inside = max(ends) - min(subs) if ends and subs else 0.0  # first hand-over to last end
        note = (f"first hand-over to last end {inside:.1f} s = {jobs / inside if inside else 0:.0f} jobs/s; "
                f"cpu ms/job: launcher {launcher_cpu / jobs * 1000:.2f}, worker {own:.2f}, "
                f"its reaper {helpers:.2f}, runs {runs:.2f}")  # fmt: skip
    name = name or ("corral pilot" if pilot else "corral (arrays)")
    return Result(name, jobs, submit, finished, ok, commands, note=note, made=made_under(root / run_id))


class CpuSampler:
    """CPU seconds on this node of RUN_ID's pilot workers: each worker process's own, its
    helpers' (the reaper that starts runs), and the runs' (reaped: their parents' cutime),
    read from /proc every 0.2 s while they live (Slurm accounting is off here; the last 0.2 s
    of a worker may be missed). `corral run`'s own CPU is the bench's rusage of its child."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.seen: dict[int, tuple[float, float]] = {}  # pid -> (own, reaped children)
        self.workers: set[int] = set()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.done.wait(0.2):
            for pid in worker_pids(self.run_id):
                self.workers.add(pid)
                for one in [pid, *children(pid)]:
                    self._sample(one)

    def _sample(self, pid: int) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return
        utime, stime, cutime, cstime = (int(x) / tick for x in fields[11:15])
        self.seen[pid] = (utime + stime, cutime + cstime)

    def stop(self) -> tuple[float, float, float]:
        """(workers' own, their helpers' own, the runs') CPU seconds."""
        self.done.set()
        self.thread.join()
        own = sum(self.seen[p][0] for p in self.workers if p in self.seen)
        helpers = sum(o for p, (o, _) in self.seen.items() if p not in self.workers)
        return own, helpers, sum(r for _, r in self.seen.values())


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


# -- memory with 100,000 jobs queued -------------------------------------------------------------


def rss_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    found = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(found.group(1)) / 1024 if found else 0.0


def is_corral(pid: int) -> bool:
    try:
        return b"corral" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def tree(pid: int) -> list[int]:
    """PID and its descendants."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True)
    children: dict[int, list[int]] = {}
    for line in out.stdout.splitlines():
        child, parent = (int(x) for x in line.split())
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def launcher_pids(task_dir: Path) -> list[int]:
    """The supervisor holding the journal (its pid is in journal.lock), wherever it was forked."""
    try:
        text = (task_dir / "journal.lock").read_text().split()
    except OSError:
        return []
    return [int(text[0])] if text and text[0].isdigit() else []


def worker_pids(run_id: str) -> list[int]:
    """The pilot's worker processes of RUN_ID on this node (`corral worker RUN_ID WORKER`)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"corral" in b" ".join(argv) and b"worker" in argv and run_id.encode() in argv:
            found.append(int(entry))
    return found


def pilot_rss(root: Path, queued: int, env: dict[str, str], pilot: str) -> tuple[float, float]:
    """Peak RSS (MB) of the launcher (its largest corral process) and of the largest worker while
    QUEUED jobs of `sleep 600` wait and the workers run what fits; then kills the ensemble."""
    spec = root / f"rss-{uuid.uuid4().hex[:6]}.yaml"
    spec.write_text(spec_text("sleep 600", queued, 1.0, pilot))
    run_id = f"{PREFIX}rss-{uuid.uuid4().hex[:6]}"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "corral", "--root", str(root), "run", str(spec), "--id", run_id, "-q"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.time() + 600
        while not running(root, env, run_id):
            if launcher.poll() is not None or time.time() > deadline:
                why = last_line(launcher.stderr.read().decode()) if launcher.stderr else ""
                fail(f"the pilot never ran a job of {queued}: {why}")
            time.sleep(1)
        peak_launcher = peak_worker = 0.0
        for _ in range(5):  # a few samples, a second apart: the peak while it runs and waits
            pids = tree(launcher.pid) + launcher_pids(root / run_id)
            peak_launcher = max([peak_launcher] + [rss_mb(p) for p in pids if is_corral(p)])
            peak_worker = max([peak_worker] + [rss_mb(p) for p in worker_pids(run_id)])
            time.sleep(1)
        return peak_launcher, peak_worker
    finally:
        corral(root, env, "kill", run_id, check=False)
        try:
            launcher.wait(timeout=300)
        except subprocess.TimeoutExpired:
            launcher.kill()


def running(root: Path, env: dict[str, str], run_id: str) -> bool:
    status = corral(root, env, "status", run_id, "--json", check=False)
    if status.returncode != 0:
        return False
    views = json.loads(status.stdout)  # [] until the launcher has written its journal
    return bool(views) and int(views[0]["jobs"]["running"]) > 0


def last_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[-1]


# -- corral.Executor on Slurm -------------------------------------------------------------------

EXECUTOR = """
import json, statistics, sys, time, corral
ident, root, calls, slurm = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
began = time.perf_counter()
with corral.Executor(id=ident, root=root, max_workers=16, backend="slurm", slurm=slurm) as ex:
    first = ex.submit(abs, -1).result(timeout=900)
    trips = []
    for i in range(3):
        t = time.perf_counter()
        assert ex.submit(abs, -i).result(timeout=900) == i
        trips.append(time.perf_counter() - t)
    t = time.perf_counter()
    assert list(ex.map(abs, range(-calls, 0), timeout=1800)) == list(range(calls, 0, -1))
    batch = time.perf_counter() - t
print(json.dumps({"first": time.perf_counter() - began - batch - sum(trips), "trip": statistics.median(trips),
                  "batch": batch}))
"""


def run_executor(root: Path, calls: int, env: dict[str, str], pilot: str | None) -> Result:
    """CALLS trivial calls (abs) through corral.Executor(backend="slurm"), 16 at a time: the
    first call (start-up included), the median round trip of one call, then CALLS in one map."""
    import yaml

    slurm: dict[str, object] = {"poll_interval": 0.5, "time": 600}
    slurm["pilot"] = yaml.safe_load(pilot) if pilot else None  # None: one array task per call
    ident = f"{PREFIX}ex-{uuid.uuid4().hex[:6]}"
    proc = subprocess.run(
        [sys.executable, "-c", EXECUTOR, ident, str(root), str(calls), json.dumps(slurm)],
        capture_output=True, text=True, check=False, env=env, timeout=3600,
    )  # fmt: skip
    subprocess.run(["scancel", f"--name=corral-{ident}"], capture_output=True, check=False)
    if proc.returncode != 0:
        fail(f"the executor failed ({proc.returncode}): {last_line(proc.stderr)}")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    name = "executor pilot" if pilot else "executor (arrays)"
    note = f"first call {got['first']:.1f} s, one call {got['trip']:.2f} s"
    return Result(name, calls, 0.0, got["batch"], calls, {}, note=note)
