"""What a record asks the shell to do once it is durable (spawn, signal, submit, ...).

A record is a decision; its effect is carried out only after the record is committed (intent
before effect). This module is the one place that maps a record to its effect.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from corral.core.records import Action, Cause, Record, Request, RunUpdate, Signal, Transition
from corral.core.states import ENSEMBLE, TASK_TERMINAL, RunState, TaskState
from corral.core.supervision import Supervision
from corral.supervisor.backend import RunKey


class EffectKind(enum.Enum):
    SPAWN = "spawn"  # start a LAUNCHING run through the reaper
    SIGNAL = "signal"  # send `sig` to a run's tree
    STOP = "stop"  # SIGSTOP a run's tree (pause)
    CONT = "cont"  # SIGCONT a run's tree (resume)
    SWEEP = "sweep"  # kill what an ended job's runs left behind
    SUBMIT = "submit"  # hand a job to the remote backend
    CANCEL = "cancel"  # cancel remote jobs (job -1: every live one)


@dataclass(slots=True)
class Effect:
    kind: EffectKind
    key: RunKey | None = None
    sig: int = 0  # SIGNAL only
    job: int = -1  # SWEEP, SUBMIT, CANCEL
    signalled: bool = False  # SWEEP: a run of the job was signalled (leftovers likely)


def effect_of(rec: Record, sup: Supervision) -> Effect | None:
    """The effect `rec` asks for, judged BEFORE it is folded (see the sweep and the resume
    cases). States decide, never the reason text: a run going PAUSED is stopped, a run going
    from PAUSED to RUNNING is continued (the only producer of either is core's pause_decisions)."""
    remote = sup.remote
    if isinstance(rec, RunUpdate):
        key = (rec.job, rec.process, rec.run)
        if rec.state == RunState.LAUNCHING:
            return Effect(EffectKind.SPAWN, key)
        if rec.state == RunState.PAUSED:  # a pause (core/decisions.py pause_decisions)
            return Effect(EffectKind.STOP, key)
        if rec.state == RunState.RUNNING and _run_state(sup, key) is RunState.PAUSED:  # a resume
            return Effect(EffectKind.CONT, key)
    elif isinstance(rec, Signal):
        return Effect(EffectKind.SIGNAL, (rec.job, rec.process, rec.run), sig=rec.sig)
    elif remote:
        if isinstance(rec, Transition) and rec.state == TaskState.SUBMITTED:
            return Effect(EffectKind.SUBMIT, job=rec.job)
        if isinstance(rec, Transition) and rec.cause is Cause.HEARTBEAT:
            return Effect(EffectKind.CANCEL, job=rec.job)  # the watchdog's verdict is durable
        if isinstance(rec, Request) and (
            rec.action == Action.KILL or (rec.action == Action.HALT and sup.policy.halt.mode == "kill")
        ):
            return Effect(EffectKind.CANCEL, job=-1 if rec.job is None else rec.job)
    elif isinstance(rec, Transition) and rec.job != ENSEMBLE and rec.state in TASK_TERMINAL:
        # judged now: once the end is applied, a finished job's runs may be forgotten
        rt = sup.jobs.get(rec.job)
        signalled = rt is not None and any(r.signal_sent for p in rt.processes.values() for r in p.runs)
        return Effect(EffectKind.SWEEP, job=rec.job, signalled=signalled)
    return None


def _run_state(sup: Supervision, key: RunKey) -> RunState | None:
    """The run's state before the record is folded (None: no such run)."""
    rt = sup.jobs.get(key[0])
    run = None if rt is None else rt.find_run(key[1], key[2])
    return None if run is None else run.state
