"""supervisor/effects.py: the effect of a record is decided by states (enums), never by the
reason text a record carries for display."""

from __future__ import annotations

from corral.core.records import Opened, RunUpdate
from corral.core.states import RunState
from corral.core.supervision import Supervision
from corral.spec.model import Process, Task
from corral.supervisor.effects import EffectKind, effect_of

ONE = Task(name="t", processes=(Process(name="p", cmd="true"),))


def _running() -> Supervision:
    sup = Supervision("task", "t", lambda _j: ONE, 1)
    sup.apply(Opened("task", "t", {}, 0.0, "host", "boot"))
    for _ in range(10):
        records = sup.decide(1.0).records
        for rec in records:
            sup.apply(rec)
    run = sup.jobs[0].find_run("p", 0)
    assert run is not None and run.state is RunState.LAUNCHING
    sup.apply(RunUpdate(0, "p", 0, RunState.RUNNING.value, 1.0, pid=123, start_ticks=1))
    return sup


def test_pause_and_resume_are_decided_by_the_states_not_the_reason_text() -> None:
    sup = _running()
    for text in ("pause", "", "anything"):
        effect = effect_of(RunUpdate(0, "p", 0, RunState.PAUSED.value, 2.0, reason=text), sup)
        assert effect is not None and effect.kind is EffectKind.STOP and effect.key == (0, "p", 0)
    # RUNNING again for a run that is not paused: nothing to continue, whatever the text says
    assert effect_of(RunUpdate(0, "p", 0, RunState.RUNNING.value, 2.0, reason="resume"), sup) is None
    sup.apply(RunUpdate(0, "p", 0, RunState.PAUSED.value, 2.0, reason="pause"))
    for text in ("resume", "", "anything"):
        effect = effect_of(RunUpdate(0, "p", 0, RunState.RUNNING.value, 3.0, reason=text), sup)
        assert effect is not None and effect.kind is EffectKind.CONT


def test_a_run_that_does_not_exist_asks_for_nothing() -> None:
    sup = _running()
    assert effect_of(RunUpdate(0, "p", 9, RunState.RUNNING.value, 2.0), sup) is None
    assert effect_of(RunUpdate(5, "p", 0, RunState.RUNNING.value, 2.0), sup) is None
