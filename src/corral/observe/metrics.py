"""/metrics in the Prometheus text format, collected from the catalog's cached views at scrape
time (prometheus_client custom collector): nothing is counted twice, nothing kept in between."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from corral.core.records import JournalKind
from corral.observe.catalog import Catalog
from corral.observe.schemas import TaskStateName

JOB_STATES = ("pending", "running", "succeeded", "failed", "killed", "lost")


class CatalogCollector(Collector):
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def collect(self) -> Iterator[Metric]:
        entries = self.catalog.entries()
        tasks = GaugeMetricFamily("corral_tasks", "Tasks and ensembles by state", labels=["kind", "state"])
        by_state = Counter((e.view.get("kind") or "unknown", e.view["state"]) for e in entries)
        for kind in JournalKind:
            for state in TaskStateName:
                tasks.add_metric([kind.value, state.value], by_state.get((kind, state.value), 0))
        yield tasks
        jobs = GaugeMetricFamily(
            "corral_jobs", "Jobs of each ensemble by state", labels=["ensemble", "state"]
        )
        for e in entries:
            counts = e.view.get("jobs")
            if counts:
                for job_state in JOB_STATES:
                    jobs.add_metric([e.view["id"], job_state], counts[job_state])
        yield jobs
        started = CounterMetricFamily("corral_runs_started", "Runs launched", labels=["task"])
        failed = CounterMetricFamily("corral_runs_failed", "Runs that failed", labels=["task"])
        lost = CounterMetricFamily("corral_runs_lost", "Runs marked LOST", labels=["task"])
        size = GaugeMetricFamily("corral_journal_bytes", "Size of each journal", labels=["task"])
        for e in entries:
            task_id = e.view["id"]
            started.add_metric([task_id], e.runs.started)
            failed.add_metric([task_id], e.runs.failed)
            lost.add_metric([task_id], e.runs.lost)
            size.add_metric([task_id], e.journal_bytes)
        yield from (started, failed, lost, size)
        live = sum(1 for e in entries if e.view.get("supervised"))
        yield GaugeMetricFamily("corral_live_supervisors", "Tasks with a live supervisor", value=live)
