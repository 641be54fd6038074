"""The interface of a batch-system backend: what the supervisor's loop drives.

A backend runs jobs elsewhere (Slurm today; PBS, OAR or LSF would each be one module more). It
observes its jobs, lets the core judge what an observation means (core/outcome.py: a table per
batch state), and records the verdict through the engine; it never decides an outcome itself.
The supervisor calls, in its loop:

- `submit(jobs)` for the jobs the core admitted as SUBMITTED this turn (records Submitted
  before relying on the batch system's ids);
- `due()` for when it wants its next `poll(now)` (None: nothing to watch);
- `poll(now)` to observe every live job (one query per interval) and record what changed;
- `cancel(jobs)` to carry out a recorded kill;
- `reattach()` once after a recovery: watch the live jobs again; returns how many;
- `close()` once the supervision ended (the ensemble is terminal): release what the backend
  holds (pilot workers are cancelled); not called when the supervisor stops otherwise
  (a crash, a detach): a recovery re-attaches.

Local runs (and slurm-steps, which starts each local run as an srun step) are not driven
through this interface: the supervisor's launcher starts and reaps them itself.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Backend(Protocol):
    def submit(self, jobs: list[int]) -> None: ...

    def due(self) -> float | None: ...

    def poll(self, now: float) -> None: ...

    def cancel(self, jobs: list[int]) -> None: ...

    def reattach(self) -> int: ...

    def close(self) -> None: ...
