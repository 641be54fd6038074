"""Soak: a process restarted forever (daemon, `cmd: true`, max_failures: 0) for RUNS runs under
a live supervisor with a small compaction threshold. Prints, while it runs and at the end: runs,
runs per second, the largest journal size seen, compactions (from `corral read`), the
supervisor's RSS, the checkpoint's and status.json's sizes. The suite runs the same assertions
on 1,000 runs (tests/scenarios/test_compaction_live.py).

    python bench/soak_compaction.py [RUNS] [THRESHOLD_BYTES]     (default 100000 65536)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _runs(corral: list[str], env: dict[str, str]) -> tuple[int, int]:
    out = subprocess.run([*corral, "status", "soak", "--json"], capture_output=True, text=True, env=env)
    views = json.loads(out.stdout or "[]")
    if not views or not views[0].get("processes"):
        return 0, 0
    p = views[0]["processes"][0]
    return p.get("runs_dropped", 0) + len(p["runs"]), len(p["runs"])


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    threshold = int(sys.argv[2]) if len(sys.argv) > 2 else 64 * 1024
    work = Path(tempfile.mkdtemp(prefix="corral-soak-"))
    root = work / "root"
    spec = work / "soak.yaml"
    spec.write_text(
        f"name: soak\njournal: {{compact_at: {threshold}}}\nprocesses:\n"
        "  - name: p\n    cmd: 'true'\n    daemon: true\n    max_failures: 0\n"
        "    logger: {destination: none}\n"
    )
    env = dict(os.environ, CORRAL_ROOT=str(root))
    corral = [sys.executable, "-m", "corral", "--root", str(root)]
    sup = subprocess.Popen([*corral, "run", str(spec), "--id", "soak", "-q"], env=env)
    journal = root / "soak" / "journal"
    ledger = root / "soak" / "reaper.log"
    start, biggest, rss, biggest_ledger = time.time(), 0, {}, 0
    done, kept = 0, 0
    next_report = 0
    while done < runs:
        time.sleep(0.5)
        if sup.poll() is not None:
            sys.exit(f"the supervisor ended: {sup.returncode}")
        if journal.exists():
            biggest = max(biggest, journal.stat().st_size)
        if ledger.exists():
            biggest_ledger = max(biggest_ledger, ledger.stat().st_size)
        done, kept = _runs(corral, env)
        if done >= next_report:
            rss[done] = _rss_kb(sup.pid)
            print(
                f"{done:>7} runs  {done / (time.time() - start):6.0f} runs/s  journal max {biggest} B  "
                f"RSS {rss[done]} kB  kept {kept}",
                flush=True,
            )
            next_report = done + runs // 10
    elapsed = time.time() - start
    read = subprocess.run([*corral, "read", "soak"], capture_output=True, text=True, env=env).stdout
    head = read.splitlines()[1] if len(read.splitlines()) > 1 else ""
    subprocess.run([*corral, "kill", "soak"], env=env, capture_output=True)
    sup.wait(120)
    ckpt = root / "soak" / "checkpoint"
    print(f"\n{done} runs in {elapsed:.0f} s ({done / elapsed:.0f} runs/s); threshold {threshold} B")
    print(f"journal: largest seen {biggest} B, now {journal.stat().st_size} B; {head.strip()}")
    print(f"checkpoint {ckpt.stat().st_size if ckpt.exists() else 0} B; runs kept in the fold {kept}")
    print("supervisor RSS kB by runs: " + ", ".join(f"{k}: {v}" for k, v in sorted(rss.items())))
    logs = root / "soak" / "logs"
    print(
        f"reaper.log (rewritten with the journal): largest seen {biggest_ledger} B, "
        f"now {ledger.stat().st_size if ledger.exists() else 0} B"
    )
    print(f"not compacted: logs/ {len(os.listdir(logs)) if logs.exists() else 0} files")
    print(f"work directory: {work}")


if __name__ == "__main__":
    main()
