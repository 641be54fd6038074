"""Many short jobs on Slurm (issue 14): five ways side by side, in one invocation.

    python bench/slurm.py                                   # a few minutes: 160 x sleep 0.5, 400 x /bin/true
    python bench/slurm.py --sleep-jobs 2000 --true-jobs 10000 --systems pilot,hq,array,sbatch
    python bench/slurm.py --workloads rss --queued 100000   # memory only
    python bench/slurm.py --workloads stream --stream-jobs 2000  # stream_logs false vs true

Needs the local Slurm (scripts/slurm-up.sh; 16 advertised CPUs here). Systems:

* sbatch:  one `sbatch --wrap CMD` per job, then one batched squeue per poll interval;
* array:   one plain `sbatch --array=0-(N-1) --wrap CMD` (no journal, no retries);
* corral:  `corral run` with `backend: slurm` (one array; a supervisor per job on the node);
* pilot:   `corral run` with `slurm: {pilot: {...}}` (worker jobs take the jobs over TCP);
           skipped, with the reason printed, where this corral has no pilot workers;
* hq:      HyperQueue's PyPI package (server + worker in one process) inside one Slurm job of
           all advertised CPUs; skipped, with the reason, where it does not install or run.

Workloads: `sleep` (N x `sleep 0.5`; ideal = N x 0.5 s / advertised CPUs), `true`
(N x `/bin/true`; jobs/s end to end), `executor` (--calls trivial Python calls through
corral.Executor(backend="slurm"), with arrays and with pilot workers) and `rss` (peak RSS of the
pilot's launcher and worker, and of HyperQueue, with --queued jobs of `sleep 600` queued) and
`stream` (--stream-jobs x `/bin/echo` of one line on pilot workers, `stream_logs: false` then
`true`: jobs/s and the files and directories the run left under its directory, the shared file
system on a cluster).
Goals for the pilot: sleep >= 3 x faster than sbatch-per-job and within 1.3 x of ideal; true
>= 500 jobs/s; launcher and worker < 100 MB each with 100,000 jobs queued.

corral runs get a bytecode cache under the bench's temp dir (see bench/common.py);
--no-bytecode-cache keeps the environment as it is. Only Slurm jobs named with `cbench-` are
the bench's; it waits for them to drain between systems and never touches others.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import bytecode_env
from slurm_common import BenchFailed, Result, Skipped, advertised_cpus, machine_load, wait_idle
from slurm_corral import PILOT, pilot_missing, pilot_rss, run_corral, run_executor
from slurm_peers import hq_rss_queued, hyperqueue_missing, run_array, run_hyperqueue, run_sbatch

SYSTEMS = ("sbatch", "array", "corral", "pilot", "hq")
WORKLOADS = {"sleep": "sleep 0.5", "true": "/bin/true"}
STREAM = "/bin/echo one line of output from a job"
Row = Result | Skipped


def run_workload(args: argparse.Namespace, work: Path, env: dict[str, str], cmd: str, jobs: int) -> list[Row]:
    runners: dict[str, Callable[[], Result]] = {
        "sbatch": lambda: run_sbatch(cmd, jobs, args.poll),
        "array": lambda: run_array(cmd, jobs, args.poll),
        "corral": lambda: run_corral(work, cmd, jobs, args.poll, env, None, args.shell),
        "pilot": lambda: run_corral(work, cmd, jobs, args.poll, env, args.pilot, args.shell),
        "hq": lambda: run_hyperqueue(cmd, jobs, args.cpus, work),
    }
    rows: list[Row] = []
    for name in args.systems:
        why = args.missing.get(name)
        if why:
            rows.append(Skipped(name, why))
            continue
        wait_idle()
        print(f"{cmd} x {jobs}: {name} ...", file=sys.stderr, flush=True)
        try:
            rows.append(runners[name]())
            print(f"  done in {rows[-1].finished:.1f} s", file=sys.stderr)  # type: ignore[union-attr]
        except BenchFailed as e:
            rows.append(Skipped(name, str(e)))
    return rows


def table(rows: list[Row], title: str, ideal: float | None) -> list[str]:
    lines = [title, "", f"{'':<20}{'submit s':>9}{'finished s':>11}{'jobs/s':>9}{'ok':>7}{'sbatch':>8}"
             f"{'squeue':>8}{'x sbatch/job':>13}{'x ideal':>9}"]  # fmt: skip
    base = next((r for r in rows if isinstance(r, Result) and r.name == "sbatch per job"), None)
    for r in rows:
        if isinstance(r, Skipped):
            lines.append(f"{r.name:<20}skipped: {r.why}")
            continue
        speed = f"{base.finished / r.finished:.2f}" if base else "-"
        over = f"{r.finished / ideal:.2f}" if ideal else "-"
        lines.append(
            f"{r.name:<20}{r.submit:>9.2f}{r.finished:>11.1f}{r.rate:>9.1f}{r.ok:>7}"
            f"{r.commands.get('sbatch', 0):>8}{r.commands.get('squeue', 0):>8}{speed:>13}{over:>9}"
            + (f"   ({r.note})" if r.note else "")
        )
    return lines


def goals(rows: list[Row], kind: str, ideal: float | None) -> list[str]:
    by = {r.name: r for r in rows if isinstance(r, Result)}
    pilot, base, hq = by.get("corral pilot"), by.get("sbatch per job"), by.get("HyperQueue (1 job)")
    if pilot is None:
        return []
    out = []
    if kind == "sleep" and base and ideal:
        out.append(f"pilot: {base.finished / pilot.finished:.2f} x faster than sbatch-per-job (goal >= 3), "
                   f"{pilot.finished / ideal:.2f} x ideal (goal <= 1.3)")  # fmt: skip
    if kind == "true":
        out.append(f"pilot: {pilot.rate:.0f} jobs/s end to end (goal >= 500)")
    if hq:
        out.append(f"pilot: {hq.finished / pilot.finished:.2f} x the speed of HyperQueue")
    return out


def executor(args: argparse.Namespace, work: Path, env: dict[str, str]) -> list[str]:
    rows: list[Row] = []
    for pilot in (None, args.pilot):
        name = "executor pilot" if pilot else "executor (arrays)"
        if pilot and args.missing.get("pilot"):
            rows.append(Skipped(name, args.missing["pilot"]))
            continue
        wait_idle()
        print(f"executor x {args.calls}: {name} ...", file=sys.stderr, flush=True)
        try:
            rows.append(run_executor(work, args.calls, env, pilot))
        except BenchFailed as e:
            rows.append(Skipped(name, str(e)))
    title = f"corral.Executor(backend='slurm'): {args.calls} trivial calls in one map, 16 at a time"
    lines = table(rows, title, None)
    by = {r.name: r for r in rows if isinstance(r, Result)}
    if "executor pilot" in by and "executor (arrays)" in by:
        ratio = by["executor (arrays)"].finished / by["executor pilot"].finished
        lines.append(f"executor: pilot {ratio:.1f} x the speed of a batch job per call")
    return lines


def memory(args: argparse.Namespace, work: Path, env: dict[str, str]) -> list[str]:
    lines = [f"Memory with {args.queued} jobs queued (sleep 600; the runnable ones running)", ""]
    if args.missing.get("pilot"):
        lines.append(f"corral pilot        skipped: {args.missing['pilot']}")
    else:
        wait_idle()
        try:
            launcher, worker = pilot_rss(work, args.queued, env, args.pilot)
            lines.append(
                f"corral pilot        launcher {launcher:.1f} MB, worker {worker:.1f} MB (goal < 100 each)"
            )
        except BenchFailed as e:
            lines.append(f"corral pilot        failed: {e}")
    if "hq" in args.systems and not args.missing.get("hq"):
        try:
            lines.append(f"HyperQueue          {hq_rss_queued(args.queued, args.cpus, work):.1f} MB "
                         "(server + worker + client in one process)")  # fmt: skip
        except BenchFailed as e:
            lines.append(f"HyperQueue          failed: {e}")
    return lines


def streamed(args: argparse.Namespace, work: Path, env: dict[str, str]) -> list[str]:
    """Pilot workers with stream_logs false, then true, on the same small-output jobs."""
    jobs = args.stream_jobs
    lines = [f"{jobs} x {STREAM} on pilot workers: output to a file per run, or streamed", "",
             f"{'':<26}{'finished s':>11}{'jobs/s':>9}{'ok':>7}{'files':>8}{'dirs':>8}"]  # fmt: skip
    if args.missing.get("pilot"):
        return [*lines, f"{'corral pilot':<26}skipped: {args.missing['pilot']}"]
    rows: list[Result] = []
    for stream in (False, True):
        name = f"pilot stream_logs: {'true' if stream else 'false'}"
        pilot = args.pilot.rstrip().removesuffix("}") + ", stream_logs: true}" if stream else args.pilot
        wait_idle()
        print(f"{STREAM} x {jobs}: {name} ...", file=sys.stderr, flush=True)
        try:
            row = run_corral(work, STREAM, jobs, args.poll, env, pilot, args.shell, name=name)
        except BenchFailed as e:
            lines.append(f"{name:<26}failed: {e}")
            continue
        rows.append(row)
        files, dirs = row.made
        lines.append(f"{name:<26}{row.finished:>11.1f}{row.rate:>9.1f}{row.ok:>7}{files:>8}{dirs:>8}")
    if len(rows) == 2:
        plain, streamed_row = rows
        lines.append(
            f"stream_logs: {streamed_row.rate / plain.rate:.2f} x the jobs/s of a file per run; "
            f"{sum(streamed_row.made)} inodes left against {sum(plain.made)}"
        )
    return lines


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sleep-jobs", type=int, default=160, help="jobs of `sleep 0.5` (full size: 2000)")
    ap.add_argument("--true-jobs", type=int, default=400, help="jobs of `/bin/true` (full size: 10000)")
    ap.add_argument("--queued", type=int, default=100_000, help="jobs queued for the rss workload")
    ap.add_argument("--stream-jobs", type=int, default=400, help="jobs of the stream workload")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma list of {', '.join(SYSTEMS)}")
    ap.add_argument(
        "--workloads",
        default="sleep,true,executor,rss,stream",
        help="comma list of sleep, true, executor, rss, stream",
    )
    ap.add_argument("--calls", type=int, default=50, help="calls of the executor workload")
    ap.add_argument("--cpus", type=int, default=0, help="CPUs of a pilot worker and of HQ's job (0: all)")
    ap.add_argument("--poll", type=float, default=0.5, help="poll interval of every system, seconds")
    ap.add_argument("--pilot", default=None, help=f"the pilot block, YAML flow (default {PILOT})")
    ap.add_argument(
        "--shell", action="store_true",
        help="corral's jobs as `cmd:` (through /bin/sh -c) instead of `argv:` (the program, as HQ runs it)",
    )  # fmt: skip
    ap.add_argument("--root", type=Path, default=None, help="corral root (default: a temp dir)")
    ap.add_argument("--no-bytecode-cache", dest="bytecode_cache", action="store_false")
    args = ap.parse_args()
    args.systems = [s for s in args.systems.split(",") if s]
    args.workloads = [w for w in args.workloads.split(",") if w]
    bad = [s for s in args.systems if s not in SYSTEMS]
    bad += [w for w in args.workloads if w not in (*WORKLOADS, "executor", "rss", "stream")]
    if bad:
        ap.error(f"unknown system or workload: {', '.join(bad)}")
    return args


def main() -> None:
    args = parse()
    if shutil.which("sbatch") is None:
        raise SystemExit("no sbatch on PATH: start a local Slurm with scripts/slurm-up.sh")
    args.cpus = args.cpus or advertised_cpus()
    args.pilot = args.pilot or PILOT.format(cpus=args.cpus)
    work = Path(tempfile.mkdtemp(prefix="corral-bench-slurm-")) if args.root is None else args.root
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "CORRAL_TASK_ID"}
    env = bytecode_env(work, env) if args.bytecode_cache else env
    args.missing = {"pilot": pilot_missing(work, env, args.pilot), "hq": hyperqueue_missing()}
    out = [f"Slurm, local single node: {advertised_cpus()} CPUs advertised, {os.cpu_count()} real, "
           f"{args.cpus} per pilot worker and HQ job; corral's jobs as "
           f"{'cmd: (through /bin/sh -c)' if args.shell else 'argv: (no shell, as HQ)'}; "
           f"poll {args.poll:g} s; at start: {machine_load()}"]  # fmt: skip
    print(out.pop(), flush=True)  # each workload prints when done: a later failure loses nothing
    try:
        for kind in args.workloads:
            if out:
                print("\n".join(out), flush=True)
                out = []
            if kind == "rss":
                out += ["", *memory(args, work, env)]
                continue
            if kind == "executor":
                out += ["", *executor(args, work, env)]
                continue
            if kind == "stream":
                out += ["", *streamed(args, work, env)]
                continue
            jobs = args.sleep_jobs if kind == "sleep" else args.true_jobs
            ideal = jobs * 0.5 / args.cpus if kind == "sleep" else None
            rows = run_workload(args, work, env, WORKLOADS[kind], jobs)
            title = f"{jobs} x {WORKLOADS[kind]}"
            title += f" (ideal {ideal:.1f} s on {args.cpus} CPUs)" if ideal else ""
            out += ["", *table(rows, title, ideal), *goals(rows, kind, ideal)]
    finally:
        if args.root is None:
            shutil.rmtree(work, ignore_errors=True)
    out += ["", f"at end: {machine_load()}"]
    print("\n".join(out))


if __name__ == "__main__":
    main()
