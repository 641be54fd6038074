"""What `lose` means, decided by core: the records come before any signal, in fold order."""

from __future__ import annotations

from corral.core.losing import lose_records
from corral.core.records import Record, Request, RunUpdate, Signal, Transition
from corral.core.states import ENSEMBLE, RunState, TaskState
from corral.core.supervision import Policy, Supervision
from corral.core.task import SIGKILL
from corral.spec.model import Process, Task

ONE = Task("job", (Process("main", cmd="work"),))


def _running_ensemble(jobs: int) -> Supervision:
    sup = Supervision("ensemble", "e", lambda _job: ONE, jobs, Policy(job_limit=jobs))
    for _ in range(10):
        records = sup.decide(0.0).records
        if not records:
            break
        for rec in records:
            sup.apply(rec)
    for job in range(jobs):
        sup.apply(RunUpdate(job, "main", 0, RunState.RUNNING.value, 0.5, pid=100 + job, start_ticks=1))
    return sup


def test_alive_runs_are_killed_after_their_signal_is_recorded_the_rest_lost() -> None:
    sup = _running_ensemble(3)
    records = lose_records(sup, {(0, "main", 0), (2, "main", 0)}, 5.0)
    assert records[0] == Request("lose", 5.0)
    signals = [(r.job, r.sig) for r in records if isinstance(r, Signal)]
    assert signals == [(0, SIGKILL), (2, SIGKILL)]
    ends = {r.job: r.state for r in records if isinstance(r, RunUpdate)}
    assert ends == {0: "KILLED", 1: "LOST", 2: "KILLED"}
    for job in (0, 2):  # the intent to kill comes before the run is called KILLED
        kinds = [type(r) for r in records if getattr(r, "job", None) == job]
        assert kinds.index(Signal) < kinds.index(RunUpdate) < kinds.index(Transition)
    assert isinstance(records[-1], Transition) and records[-1].job == ENSEMBLE
    _fold_all(sup, records)
    assert sup.state is TaskState.LOST and sup.counts[TaskState.LOST] == 3 and not sup.live


def test_nothing_live_records_only_the_request_and_the_end() -> None:
    sup = _running_ensemble(1)
    _fold_all(sup, lose_records(sup, set(), 1.0))
    assert lose_records(sup, set(), 2.0) == [Request("lose", 2.0)]  # already LOST: nothing more


def _fold_all(sup: Supervision, records: list[Record]) -> None:
    for rec in records:
        sup.apply(rec)
