"""The backends a spec may name, for the commands to give the supervisor (session.py).

`local` is the supervisor's own (supervisor/local.py) and needs no entry. A batch system more
(PBS, OAR, LSF) is one module with a `Backend` and one entry here. Each entry imports its
module only when a journal names it: `corral run` of a local task loads no Slurm client.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from corral.core.records import JournalKind
from corral.supervisor.backend import Backend, BackendKind, BackendKinds

if TYPE_CHECKING:
    from corral.core.records import Opened
    from corral.core.supervision import Supervision
    from corral.supervisor.engine import Engine
    from corral.supervisor.layout import Layout


class SlurmKind:
    """`backend: slurm`: jobs run as Slurm jobs (backends/slurm.py), or on pilot workers when
    an ensemble's `slurm.pilot` is set (backends/pilot.py)."""

    def check(self, layout: Layout, opened: Opened, sup: Supervision, file: str | None) -> None:
        from corral.backends.slurm import SlurmBackend
        from corral.backends.slurm_layout import slurm_options

        options = slurm_options(opened)
        if options.pilot is not None and opened.kind == JournalKind.ENSEMBLE:
            from corral.backends.pilot import PilotBackend

            PilotBackend(layout.root, layout.id, options, options.pilot).check(sup.task_for(0), file)
            return
        backend = SlurmBackend(layout.root, layout.id, options, sup.policy.job_limit)
        backend.check(sup.task_for(0), file)

    def build(self, engine: Engine, opened: Opened, *, new: bool) -> Backend:
        from corral.backends.slurm import SlurmBackend
        from corral.backends.slurm_layout import slurm_options

        options = slurm_options(opened)
        if options.pilot is not None and opened.kind == JournalKind.ENSEMBLE:
            from corral.backends.pilot import PilotBackend

            pilot = PilotBackend(engine.layout.root, engine.layout.id, options, options.pilot)
            pilot.attach(engine)
            return pilot
        backend = SlurmBackend(
            engine.layout.root, engine.layout.id, slurm_options(opened), job_limit=engine.sup.policy.job_limit
        )
        backend.engine = engine
        backend.resolved = new  # a new journal has no earlier submissions to look for by name
        return backend


class SlurmStepsKind:
    """`backend: slurm-steps`: local runs, each a step of the allocation (backends/slurm_steps.py)."""

    def check(self, layout: Layout, opened: Opened, sup: Supervision, file: str | None) -> None:
        from corral.backends.slurm_steps import check_steps

        check_steps(file)

    def build(self, engine: Engine, opened: Opened, *, new: bool) -> Backend:
        from corral.backends.slurm_steps import SlurmStepsBackend

        return SlurmStepsBackend(
            engine.sup, engine.layout, engine.env, engine.record, engine.clock, engine.crash, dict(os.environ)
        )


_SLURM: BackendKind = SlurmKind()
_STEPS: BackendKind = SlurmStepsKind()
KINDS: BackendKinds = {"slurm": _SLURM, "slurm-steps": _STEPS}
