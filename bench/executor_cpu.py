"""Where a trivial call's CPU goes: corral.Executor against the fork-per-call baseline.

    python bench/executor_cpu.py [--calls 1000]

Throughput on the shared 2-core hosts moves by 2-3 x with the load of others; CPU time and
minor page faults per call move much less, and say which process pays. For N calls of
`f(x) = x`, 4 at a time (the calls of bench/executor.py), in this invocation:
- corral: the driver (this process), the executor's supervisor, its call zygote, and the
  calls' processes (the zygote's children), from /proc/PID/stat before and after a `map`;
- the multiprocessing fork-per-call baseline (bench/executor.py's run_fork): this process
  and its children, from getrusage.
CPU is user + system time in clock ticks (10 ms): use >= 1,000 calls.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from executor import noop, run_fork

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[float, float, int, int]:
    """(own CPU s, waited-for children's CPU s, own minor faults, children's minor faults)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = [int(x) / TICK for x in fields[11:15]]
    return cpu[0] + cpu[1], cpu[2] + cpu[3], int(fields[7]), int(fields[8])


def _zygote_of(sup: int) -> int:
    for kid in Path(f"/proc/{sup}/task/{sup}/children").read_text().split():
        if b"corral.executor.zygote" in Path(f"/proc/{kid}/cmdline").read_bytes():
            return int(kid)
    raise RuntimeError("the executor's supervisor has no call zygote")


def corral_cpu(n: int, root: Path) -> dict[str, tuple[float, int]]:
    import corral
    from corral.journal import lock_holder

    ident = f"cpu-{os.getpid()}"
    with corral.Executor(id=ident, root=root, max_workers=4) as ex:
        ex.submit(noop, -1).result()
        sup = lock_holder(root / ident / "journal")
        assert sup is not None
        pids = {"driver": os.getpid(), "supervisor": sup, "zygote": _zygote_of(sup)}
        before = {k: _stat(p) for k, p in pids.items()}
        assert list(ex.map(noop, range(n))) == list(range(n))
        after = {k: _stat(p) for k, p in pids.items()}
    out = {k: (after[k][0] - before[k][0], after[k][2] - before[k][2]) for k in pids}
    z0, z1 = before["zygote"], after["zygote"]
    out["calls"] = (z1[1] - z0[1], z1[3] - z0[3])
    return out


def fork_cpu(n: int, work: Path) -> dict[str, tuple[float, int]]:
    s0, c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    run_fork(n, work)  # 30 sequential round trips first, then the N calls
    s1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)

    def cpu(a: resource.struct_rusage, b: resource.struct_rusage) -> float:
        return b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime

    n_all = n + 30
    scale = n / n_all  # per call below: the round trips' calls counted too
    return {
        "driver": (cpu(s0, s1) * scale, int((s1.ru_minflt - s0.ru_minflt) * scale)),
        "calls": (cpu(c0, c1) * scale, int((c1.ru_minflt - c0.ru_minflt) * scale)),
    }


def _show(label: str, parts: dict[str, tuple[float, int]], n: int) -> float:
    total = sum(cpu for cpu, _ in parts.values())
    print(f"  {label}: {total * 1000 / n:5.2f} ms CPU per call")
    for name, (cpu, faults) in parts.items():
        print(f"    {name:<11} {cpu * 1000 / n:5.2f} ms  {faults / n:6.0f} minor faults")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    n = parser.parse_args().calls
    print(f"executor CPU: {n} trivial calls, 4 at a time; load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        ours = _show("corral.Executor", corral_cpu(n, Path(tmp) / "corral"), n)
        print(f"    ({n / (time.perf_counter() - t):.0f} calls/s with start-up and shut-down)")
        theirs = _show("fork per call", fork_cpu(n, Path(tmp)), n)
    print(f"load after: {os.getloadavg()[0]:.2f}")
    print(f"corral CPU / fork CPU = {ours / theirs:5.2f}")


if __name__ == "__main__":
    main()
