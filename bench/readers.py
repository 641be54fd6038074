"""Readers of big journals: status of a 100,000-job ensemble, recovery of one, a root of
10,000 finished tasks.

    python bench/readers.py [--jobs 100000] [--tasks 10000] [--repeat 3] [--root DIR]

The journals are written directly, record for record as a supervisor writes them (an
ensemble's job: ACTIVE, LAUNCHING, RUNNING, SUCCESS, job SUCCESS; a task: the same for its one
process), without running the processes: the point is what readers pay for a journal, and a
real 100,000-job run takes minutes. Each figure is the median of --repeat runs of the real
`corral` command, beside the same command with the checkpoint file removed (a full replay), so
the ratio is what the checkpoint buys, measured in the same invocation.

1. status ID --jobs --json of a finished 100,000-job ensemble        (goal < 0.3 s)
2. status ID --json of the same                                       (status.json)
3. recover of a 100,000-job ensemble with half of its jobs finished: from the command's start
   to its first new launch in the journal                             (goal < 1 s)
4. status --json of a root with 10,000 finished tasks                 (goal < 1 s)
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bytecode_env

from corral.core.records import Attached, Opened, Record, RunUpdate, Transition, encode
from corral.core.states import ENSEMBLE
from corral.journal import encode_frame
from corral.journal.frame import HEADER
from corral.spec.model import Ensemble, JobTemplate, Process, Range, Task


def _job_records(job: int, at: float, pid: int) -> list[Record]:
    return [
        Transition(job, "ACTIVE", at),
        RunUpdate(job, "main", 0, "LAUNCHING", at),
        RunUpdate(job, "main", 0, "RUNNING", at + 0.001, pid=pid, start_ticks=pid),
        RunUpdate(job, "main", 0, "SUCCESS", at + 0.002, exit_code=0),
        Transition(job, "SUCCESS", at + 0.003),
    ]


def write_journal(path: Path, records: list[Record], checkpoint_at: int | None = None) -> None:
    """The journal of `records`; with `checkpoint_at`, also the checkpoint of the first
    `checkpoint_at` of them, written as the supervisor writes it (supervisor/checkpoints.py)."""
    from corral.supervisor.checkpoints import write
    from corral.supervisor.folding import apply_record, supervision_for
    from corral.supervisor.layout import Layout
    from corral.supervisor.snapshot import write_snapshot

    path.parent.mkdir(parents=True, exist_ok=True)
    head = HEADER + b"".join(encode_frame(encode(r)) for r in records[:checkpoint_at])
    with open(path, "wb") as f:
        f.write(head)
        f.write(b"".join(encode_frame(encode(r)) for r in records[len(records[:checkpoint_at]) :]))
    os.chmod(path, 0o600)
    if checkpoint_at is None:
        return
    layout = Layout(path.parent.parent, path.parent.name)
    opened = records[0]
    assert isinstance(opened, Opened)
    sup, jobs = supervision_for(opened, layout, keep_finished=opened.kind == "task")
    for rec in records[:checkpoint_at]:
        apply_record(sup, jobs, rec)
    write(layout, sup, len(head), checkpoint_at, records[checkpoint_at - 1].at)
    if checkpoint_at == len(records) and sup.terminal:  # the supervisor's last status.json
        write_snapshot(layout, sup, len(head), time.time())


def ensemble(root: Path, ens_id: str, jobs: int, finished: int, checkpoint_lag: int) -> None:
    """An ensemble of `jobs` jobs of /bin/true whose first `finished` jobs succeeded, with a
    checkpoint of all but the records of its last `checkpoint_lag` jobs."""
    spec = Ensemble(
        name="bench", job=JobTemplate(argv=("true",)), params={"i": Range(range=(0, jobs))}, job_limit=100
    )
    at = time.time() - 3600
    records: list[Record] = [
        Opened("ensemble", ens_id, msgspec.to_builtins(spec), at, platform.node(), "boot"),
        Attached(1, 1, at, platform.node(), "boot"),
        Transition(ENSEMBLE, "ACTIVE", at),
    ]
    for job in range(finished):
        records += _job_records(job, at + job * 0.01, 10_000 + job)
    if finished == jobs:
        records.append(Transition(ENSEMBLE, "SUCCESS", at + jobs * 0.01))
    write_journal(root / ens_id / "journal", records, len(records) - 5 * checkpoint_lag)


def tasks(root: Path, count: int) -> None:
    """`count` finished one-process tasks, each with the checkpoint its supervisor wrote at the end."""
    task = msgspec.to_builtins(Task(name="t", processes=(Process(name="main", argv=("true",)),)))
    at = time.time() - 3600
    for i in range(count):
        tid = f"task-{i:05d}"
        records: list[Record] = [
            Opened("task", tid, task, at, platform.node(), "boot"),
            Attached(1, 1, at, platform.node(), "boot"),
            *_job_records(0, at + i, 10_000 + i),
        ]
        write_journal(root / tid / "journal", records, len(records))


def timed(fn: Callable[[], None], repeat: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (user + system of the command) of `fn`.
    On a shared host the wall time includes waiting for a core; the CPU time does not."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def run(cmd: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, env=env, check=False)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)}: {proc.stderr.decode(errors='replace')}")


def interpreter(env: dict[str, str], repeat: int) -> None:
    """The floor under every figure: `corral --version` (Python start-up and the CLI's imports)."""
    wall, cpu = timed(lambda: run([sys.executable, "-m", "corral", "--version"], env), repeat)
    print(f"  {'corral --version (the floor)':<34} {wall:6.3f} s (cpu {cpu:5.3f})")


def first_launch(root: Path, ens_id: str, env: dict[str, str], corral: list[str]) -> float:
    """Seconds from `corral recover` to its first LAUNCHING record past the old journal end."""
    from corral.core.records import decode
    from corral.journal.watch import Tail

    journal = root / ens_id / "journal"
    tail = Tail(journal)
    tail.read_new()
    start = time.perf_counter()
    proc = subprocess.Popen(
        [*corral, "recover", ens_id, "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = start + 120
        while time.perf_counter() < deadline:
            for payload in tail.read_new():
                rec = decode(payload)
                if isinstance(rec, RunUpdate) and rec.state == "LAUNCHING":
                    return time.perf_counter() - start
            time.sleep(0.002)  # sampling the journal; the figure's resolution
        raise SystemExit("recover launched nothing in 120 s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        tail.close()


def hide_checkpoints(root: Path) -> None:
    """Hide what a supervisor leaves for readers (checkpoint, status.json): readers replay."""
    for name in ("checkpoint", "status.json"):
        for path in root.glob(f"*/{name}"):
            path.rename(path.with_name(name + ".hidden"))


def show_checkpoints(root: Path) -> None:
    for name in ("checkpoint", "status.json"):
        for path in root.glob(f"*/{name}.hidden"):
            path.rename(path.with_name(name))


def compare(label: str, root: Path, fn: Callable[[], tuple[float, float]], goal: float | None) -> None:
    """`fn` with the checkpoints, then without them (a replay of every journal from byte 0)."""
    (wall, cpu) = fn()
    hide_checkpoints(root)
    try:
        (replay_wall, replay_cpu) = fn()
    finally:
        show_checkpoints(root)
    verdict = "" if goal is None else f"  goal < {goal} s: {'meets' if wall < goal else 'MISSES'}"
    print(
        f"  {label:<34} {wall:6.3f} s (cpu {cpu:5.3f})   replay {replay_wall:6.3f} s (cpu {replay_cpu:5.3f})"
        f"   x{replay_wall / wall:5.1f}{verdict}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--root", type=Path, default=None)
    args = ap.parse_args()
    work = Path(args.root or tempfile.mkdtemp(prefix="corral-readers-"))
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = bytecode_env(work, dict(os.environ, PYTHONPATH=src))
    print(
        f"host: {platform.node()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.2f}; median of {args.repeat}"
    )
    corral = [sys.executable, "-m", "corral", "--root"]
    interpreter(env, args.repeat)

    big = work / "big"
    ensemble(big, "done", args.jobs, args.jobs, checkpoint_lag=0)
    size = (big / "done" / "journal").stat().st_size / 1e6
    print(f"finished ensemble of {args.jobs} jobs (journal {size:.1f} MB, checkpoint at its end):")
    c = [*corral, str(big)]
    compare(
        "status ID --jobs --json",
        big,
        lambda: timed(lambda: run([*c, "status", "done", "--jobs", "--json"], env), args.repeat),
        0.3,
    )
    compare(
        "status ID --json",
        big,
        lambda: timed(lambda: run([*c, "status", "done", "--json"], env), args.repeat),
        None,
    )

    half = work / "half"
    lag = min(1000, args.jobs // 4)
    print(f"ensemble of {args.jobs} jobs, {args.jobs // 2} finished, checkpoint {lag} jobs behind the end:")

    def recover(hide: bool) -> float:
        times = []
        for _ in range(args.repeat):
            shutil.rmtree(half, ignore_errors=True)
            ensemble(half, "half", args.jobs, args.jobs // 2, checkpoint_lag=lag)
            if hide:
                hide_checkpoints(half)
            times.append(first_launch(half, "half", env, [*corral, str(half)]))
        return statistics.median(times)

    with_ckpt, without = recover(False), recover(True)
    print(
        f"  {'recover: to its first new launch':<34} {with_ckpt:6.3f} s               replay {without:6.3f} s"
        f"              x{without / with_ckpt:5.1f}  goal < 1 s: {'meets' if with_ckpt < 1 else 'MISSES'}"
    )

    many = work / "many"
    tasks(many, args.tasks)
    print(f"root of {args.tasks} finished tasks (each with its final checkpoint):")
    m = [*corral, str(many)]
    compare(
        "status --json", many, lambda: timed(lambda: run([*m, "status", "--json"], env), args.repeat), 1.0
    )


if __name__ == "__main__":
    main()
