"""The task one job of an ensemble runs, before its template is rendered (no Jinja here:
readers build it without loading the template engine)."""

from __future__ import annotations

import msgspec

from corral.spec.model import JobTemplate, Process, Task

MAIN = "main"  # the process of a job given as a single cmd or argv


def job_task(template: JobTemplate, name: str) -> Task:
    """The (unrendered) task one job runs.

    A single cmd/argv becomes one process named `main` carrying the template's timeout,
    logger and max_failures (runs tolerated within one attempt; the ensemble's `retries` are
    attempts on top). A processes list is taken as it is, with the template's timeout given to
    processes that set none. `heartbeat` is the ensemble's business and stays out of the task.
    """
    if template.processes is not None:
        processes = tuple(
            msgspec.structs.replace(p, timeout=template.timeout)
            if p.timeout is None and template.timeout is not None
            else p
            for p in template.processes
        )
        task_failures = template.max_failures
    else:
        processes = (
            Process(
                name=MAIN,
                cmd=template.cmd,
                argv=template.argv,
                max_failures=template.max_failures,
                timeout=template.timeout,
                logger=template.logger,
            ),
        )
        task_failures = 1  # the one process failing is the job failing
    return Task(
        name=name,
        processes=processes,
        max_failures=task_failures,
        max_concurrency=template.max_concurrency,
        finalization_wait=template.finalization_wait,
        kill_grace=template.kill_grace,
        resources=template.resources,
        env=dict(template.env),
        env_clean=template.env_clean,
        user=template.user,
    )
