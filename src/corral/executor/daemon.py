"""The executor's supervisor: started detached by the first driver, found again by the next.

It is an ordinary corral supervisor of an ensemble whose jobs are calls (journal, reaper
ledger, recovery, `corral status/read/tail/kill` all as for `corral run --detach`), with the
call zygote as its reaper and a Book (book.py) installed. A driver talks to it over the
control socket. A new driver with the same id attaches to it if it lives; else it takes the
journal over (recovery: re-attaches to calls still running, reads the ends of the others from
the ledger) or creates it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any, Literal

from corral.backends.kinds import KINDS
from corral.core.records import JournalKind
from corral.errors import UserError
from corral.executor.book import Book
from corral.journal import JournalLocked, lock_holder, lock_taken
from corral.spec.load import spec_from_builtins
from corral.spec.model import Ensemble, JobTemplate, Slurm
from corral.supervisor import control
from corral.supervisor.engine import Engine
from corral.supervisor.layout import Layout
from corral.supervisor.local import LocalBackend
from corral.supervisor.run import detach
from corral.supervisor.session import SessionError, create, has_records, take_over

RUNNER = "corral.executor.runner"
ZYGOTE = [sys.executable, "-m", "corral.executor.zygote"]
SLOTS = "--slots="  # zygote.SLOTS (not imported: the zygote's imports are kept small)
AHEAD = 1  # calls handed to the zygote ahead of a free slot, per slot


def ensemble_for(
    max_workers: int | None, backend: Literal["local", "slurm"], slurm: dict[str, Any] | None
) -> Ensemble:
    job = JobTemplate(argv=(sys.executable, "-m", RUNNER, "{{task.dir}}/calls/{{params.call}}"))
    return Ensemble(
        name="executor",
        job=job,
        params={"call": ()},  # no jobs to begin with: drivers add them (JobsAdded)
        job_limit=max_workers or 0,
        backend=backend,
        slurm=slurm_options(slurm, pilot=backend == "slurm", max_workers=max_workers),
    )


PILOT_CPUS = 8  # at most this many CPUs per default pilot worker (a job most nodes can hold)


def default_pilot(max_workers: int | None) -> dict[str, Any]:
    """The pilot block of an executor on Slurm that names none: workers of up to PILOT_CPUS
    CPUs, as many as max_workers calls need (all started together while calls wait), each
    leaving after a minute without a call, for at most an hour."""
    slots = max_workers or 4
    cpus = min(slots, PILOT_CPUS)
    count = -(-slots // cpus)
    return {"workers": count, "max_workers": count, "cpus": cpus, "time": 3600, "idle_timeout": 60}


def slurm_options(
    slurm: dict[str, Any] | None, *, pilot: bool = False, max_workers: int | None = None
) -> Slurm:
    """Executor(slurm={...}) read as a spec's `slurm:` block: the same units ("1:00:00",
    "4GB"), nested blocks, and errors naming the field (SpecError, one line).

    With `pilot` (the executor's backend is Slurm) calls run on pilot workers unless the block
    says otherwise: no `pilot` key gets default_pilot(max_workers); `"pilot": None` or
    `"pilot": False` opts out (one array task per batch of calls)."""
    options = dict(slurm or {})
    if "pilot" not in options:
        if pilot:
            options["pilot"] = default_pilot(max_workers)
    elif options["pilot"] is None or options["pilot"] is False:
        del options["pilot"]
    if not options:
        return Slurm()
    probe = {"name": "executor", "job": {"cmd": "true"}, "backend": "slurm", "slurm": options}
    loaded = spec_from_builtins(probe, file="Executor(slurm=...)")
    if not isinstance(loaded, Ensemble):  # cannot happen: a `job:` key makes an ensemble
        raise TypeError("the probe spec did not load as an ensemble")
    return loaded.slurm


def alive(layout: Layout) -> bool:
    try:
        return bool(control.request(layout.control, {"op": "ping"}, timeout=5.0).get("ok"))
    except (OSError, ValueError):
        return False


def _engine(layout: Layout, spec: Ensemble) -> Engine:
    if layout.journal.exists() and has_records(layout):
        engine, _ = take_over(layout, backends=KINDS)
        if engine.sup.kind != JournalKind.ENSEMBLE or "executor" not in (
            engine.sup.opened.context if engine.sup.opened else {}
        ):
            engine.writer.close()
            raise SessionError(f"{layout.id}: exists and is not an executor")
    else:
        engine = create(layout, spec, context={"executor": 1}, backends=KINDS)
    if spec.backend == "local" and isinstance(engine.backend, LocalBackend):
        # the zygote runs `slots` calls at once and holds as many more, handed over ahead
        # (their runs LAUNCHING): a slot that frees up starts the next without a round trip
        slots = engine.sup.policy.job_limit
        engine.sup.policy = dataclasses.replace(engine.sup.policy, job_limit=slots * (1 + AHEAD))
        engine.backend.launcher.helper = [*ZYGOTE, f"{SLOTS}{slots}"]
    Book(engine)
    engine.writer.commit()
    return engine


def ensure(layout: Layout, spec: Ensemble, wait: float = 15.0) -> None:
    """A live supervisor for this executor, started (detached) if none answers."""
    deadline = time.monotonic() + wait
    while True:
        if alive(layout):
            return
        if lock_taken(layout.journal):
            # a supervisor that is ending (or starting) holds the journal: wait for it
            if time.monotonic() > deadline:
                holder = lock_holder(layout.journal)
                raise UserError(f"{layout.id}: supervised by pid {holder}, which does not answer")
            time.sleep(0.02)
            continue
        try:
            detach(layout, lambda: _engine(layout, spec), close_fds=True)
            # its control socket opens when its loop starts, a moment after the journal
            while not alive(layout):
                if time.monotonic() > deadline:
                    raise UserError(f"{layout.id}: the executor's supervisor started but does not answer")
                time.sleep(0.002)
            return
        except UserError as exc:
            # a supervisor that is ending still holds the lock, or one just started: try again
            if time.monotonic() > deadline or ("supervised by" not in str(exc) and "Locked" not in str(exc)):
                raise
        except JournalLocked:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.02)


def calls_dir(layout: Layout) -> str:
    path = os.path.join(str(layout.dir), "calls")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path
