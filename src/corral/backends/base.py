"""The interface every backend implements: `Backend`, the Protocol the supervisor's loop drives.

It is defined beside the loop that drives it (corral/supervisor/backend.py, where its methods
are described) so that the supervisor imports no backend; it is re-exported here for the
backends. Three implement it:

- `local` (corral/supervisor/local.py, the default): runs start on this host through the
  supervisor's reaper; `reattach` re-attaches to live runs and recovers exit statuses;
- `slurm-steps` (slurm_steps.py): the local backend, each run an srun step of the allocation;
- `slurm` (slurm.py): jobs go to Slurm as sbatch arrays, one squeue per poll.

A batch system (the core admits its jobs as SUBMITTED) implements `submit`, `due`, `poll`,
`cancel` and `reattach`, observes, lets the core judge what it observed (core/outcome.py: a
table per batch state) and records the verdict through the engine; it never decides an outcome
itself. Subclassing `Backend` explicitly gives it the defaults of the run-level methods (a
batch system starts no run here). A third batch system (PBS, OAR, LSF) is one module more:
its client, its states mapped onto `core.outcome.Seen`, a `Backend`, and an entry in
kinds.py, which the commands hand to the supervisor.
"""

from __future__ import annotations

from corral.supervisor.backend import Backend, BackendKind, BackendKinds, RunKey

__all__ = ["Backend", "BackendKind", "BackendKinds", "RunKey"]
