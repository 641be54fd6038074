"""The empty fold of a journal, from its Opened record: the `Supervision` and, for an
ensemble, its `Jobs` (each job's task rendered on demand from the template and params), the
ensemble's admission policy; folding one record."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from corral import spec as specs  # templating and params load on first use (lazy)
from corral.core.records import JobsAdded, JournalKind, Opened, Record
from corral.core.supervision import Policy, Supervision
from corral.spec.model import Ensemble, Task
from corral.supervisor.layout import Layout

if TYPE_CHECKING:
    from corral.spec.params import ParamSpace

__all__ = ["Jobs", "added_to", "apply_record", "policy_for", "supervision_for"]


@dataclass
class Jobs:
    """The tasks of an ensemble's jobs, rendered on demand from the template and params."""

    layout: Layout
    ensemble: Ensemble
    template: Task
    space: ParamSpace
    file: str | None = None
    attempt_of: Callable[[int], int] | None = None  # a job's current attempt ({{job.attempt}})
    _cache: dict[int, tuple[int, Task]] | None = None
    _dir: str = ""  # str(layout.dir), once: pathlib would cost more than the rendering

    def params(self, job: int) -> dict[str, Any]:
        return dict(self.space[job])

    def params_rows(self, start: int, stop: int) -> Iterator[dict[str, Any]]:
        return self.space.rows(start, stop)

    def task_for(self, job: int) -> Task:
        """The job's task rendered for its current attempt (a retry renders again)."""
        cache = self._cache if self._cache is not None else {}
        self._cache = cache
        attempt = 0 if self.attempt_of is None else self.attempt_of(job)
        found = cache.get(job)
        task = found[1] if found is not None and found[0] == attempt else None
        if task is None:
            if len(cache) > 256:
                cache.clear()
            if not self._dir:
                self._dir = str(self.layout.dir)
            ctx = specs.TemplateContext(
                task_id=self.layout.id,
                task_name=self.ensemble.name,
                task_dir=self._dir,
                ports={},
                params=dict(self.space[job]),
                # = str(layout.job_dir(job, True))
                job=specs.JobContext(index=job, dir=f"{self._dir}/jobs/{job}", attempt=attempt),
            )
            task = specs.render_task(self.template, ctx, file=self.file)
            cache[job] = (attempt, task)
        return task


def policy_for(ens: Ensemble) -> Policy:
    """The admission policy of an ensemble: pilot workers, Slurm, or this host's CPUs and memory."""
    pilot = ens.slurm.pilot
    if ens.backend == "slurm" and pilot is not None:
        from corral.core.pilot import PREFETCH

        # pilot workers: admit what the workers could hold at most; they admit by resources
        most = (pilot.max_workers or pilot.workers) * pilot.cpus * PREFETCH
        return Policy(
            job_limit=min(ens.job_limit, most) if ens.job_limit else most,
            retries=ens.retries,
            retry_backoff=ens.retry_backoff,
            halt=ens.halt,
            heartbeat=ens.job.heartbeat,
        )
    if ens.backend == "slurm":
        # Slurm admits by resources itself; 0 = no limit of ours
        return Policy(
            job_limit=ens.job_limit,
            retries=ens.retries,
            retry_backoff=ens.retry_backoff,
            halt=ens.halt,
            heartbeat=ens.job.heartbeat,
        )
    limit = ens.job_limit or (os.cpu_count() or 1)
    mem = 0
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    return Policy(
        job_limit=limit,
        retries=ens.retries,
        retry_backoff=ens.retry_backoff,
        halt=ens.halt,
        heartbeat=ens.job.heartbeat,
        cpus=float(os.cpu_count() or 1),
        memory=mem,
    )


def supervision_for(opened: Opened, layout: Layout, keep_finished: bool) -> tuple[Supervision, Jobs | None]:
    """The empty fold for a journal, from its Opened record."""
    if opened.kind == JournalKind.TASK:
        task = msgspec.convert(opened.spec, Task)
        sup = Supervision(
            JournalKind.TASK,
            opened.id,
            lambda _job: task,
            1,
            keep_finished=keep_finished,
            remote=task.backend == "slurm",
        )
        return sup, None
    ens = msgspec.convert(opened.spec, Ensemble)
    params_copy = opened.context.get("params_file")
    if params_copy:
        ens = msgspec.structs.replace(ens, params_file=str(params_copy))
    space = specs.ParamSpace.from_ensemble(ens, base_dir=str(layout.dir))
    template = specs.job_task(ens.job, ens.name)
    if ens.backend == "slurm-steps":  # every run of every job starts as a step of the allocation
        template = msgspec.structs.replace(template, backend=ens.backend)
    jobs = Jobs(layout, ens, template, space)
    sup = Supervision(
        JournalKind.ENSEMBLE,
        opened.id,
        jobs.task_for,
        len(space),
        policy_for(ens),
        keep_finished=keep_finished,
        remote=ens.backend == "slurm",
        params_of=jobs.params,
        params_rows=jobs.params_rows,
        fold_task=lambda _job: template,  # rendering changes only text: task_for renders it
    )
    jobs.attempt_of = lambda job: rt.attempt if (rt := sup.jobs.get(job)) is not None else 0
    return sup, jobs


def apply_record(sup: Supervision, jobs: Jobs | None, rec: Record) -> None:
    """Fold one record; submitted jobs first extend the parameter space."""
    if type(rec) is JobsAdded and jobs is not None:
        jobs.space.add(rec.params)
    sup.apply(rec)


def added_to(jobs: Jobs | None) -> Callable[[JobsAdded], object] | None:
    """What a batch fold (core.batchfold) calls for each JobsAdded before folding it: the
    parameter space grows first, as in `apply_record`."""
    if jobs is None:
        return None
    space = jobs.space
    return lambda rec: space.add(rec.params)
