"""The observer's Prometheus counters across real compactions: a daemon restarted forever
compacts its journal many times, and corral_runs_started / corral_runs_failed never go down
(the compacted checkpoint carries the totals of the records it folded away)."""

from __future__ import annotations

import subprocess
from typing import Any

from corral.observe.catalog import Catalog
from corral.observe.metrics import CatalogCollector


def _counters(collector: CatalogCollector) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in collector.collect():
        for sample in family.samples:
            if sample.name in ("corral_runs_started_total", "corral_runs_failed_total"):
                out[sample.name] = sample.value
    return out


def test_run_counters_never_go_down_across_compactions(corral: Any, spec_file: Any) -> None:
    spec = spec_file(
        "name: counted\n"
        "journal: {compact_at: 4096}\n"
        "processes:\n"
        "  - name: p\n"
        "    cmd: 'exit 3'\n"
        "    daemon: true\n"
        "    max_failures: 0\n"
    )
    proc: subprocess.Popen[str] = corral.start("run", str(spec), "--id", "m", "-q")
    collector = CatalogCollector(Catalog(corral.root))
    seen: list[dict[str, float]] = []
    heads: set[int] = set()  # the compactions seen between scrapes (records each folded)

    def compacted_often() -> bool:
        assert proc.poll() is None, proc.communicate()
        now = _counters(collector)
        if now:
            if seen:
                for name, value in now.items():
                    assert value >= seen[-1][name], (name, seen[-1], now)
            seen.append(now)
        head = corral("read", "m").stdout.split("\n", 2)
        if len(head) < 2 or "compacted:" not in head[1]:
            return False
        heads.add(int(head[1].split("compacted: ")[1].split()[0]))
        # scraped across several compactions, 100 runs or more
        return len(heads) >= 3 and len(seen) >= 3 and now.get("corral_runs_started_total", 0) >= 100

    corral.wait_for(compacted_often, timeout=600, interval=0.05)
    corral("kill", "m", check=True)
    proc.communicate(timeout=120)
    final = _counters(collector)
    view = corral.view("m")["processes"][0]
    runs = view["runs_dropped"] + len(view["runs"])
    # every run launched is counted, though most of their records were compacted away
    assert final["corral_runs_started_total"] == runs >= 100
    assert runs - 1 <= final["corral_runs_failed_total"] <= runs
    assert len(seen) >= 3
