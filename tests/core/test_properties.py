"""Property tests: random tasks, behaviours and requests, simulated; the records they produce fold
to valid states, replay equals live, recovery mid-way equals live, and records round-trip."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim import Behaviour, Sim

from corral.core.records import Record, Request, RunUpdate, Transition, decode, encode
from corral.core.states import ENSEMBLE, RUN_TERMINAL, RUN_TRANSITIONS, TASK_TRANSITIONS, RunState, TaskState
from corral.core.supervision import Policy, Supervision
from corral.core.task import SIGKILL
from corral.spec.model import Halt, Process, Task

# CORE_EXAMPLES=2000 for a deeper search (minutes); the default keeps the suite fast
SETTINGS = settings(
    max_examples=int(os.environ.get("CORE_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
LIMIT = 1000.0  # simulated seconds: every generated scenario ends long before
DURATIONS = st.sampled_from([0.5, 1.0, 2.0, 3.0, 5.0, 10.0])


# -- strategies --------------------------------------------------------------------------------


@st.composite
def tasks(draw: st.DrawFn) -> tuple[Task, dict[str, Behaviour]]:
    """A task whose processes all end by themselves (a simulation that always terminates)."""
    n_regular = draw(st.integers(1, 5))
    n_final = draw(st.integers(0, 2))
    processes: list[Process] = []
    behaviours: dict[str, Behaviour] = {}
    daemons: dict[str, bool] = {}
    names = [f"p{i}" for i in range(n_regular)] + [f"f{i}" for i in range(n_final)]
    for i, name in enumerate(names):
        final = name.startswith("f")
        # never after a daemon: it never succeeds, so its dependents would wait forever (Thermos)
        earlier = [m for m in names[:i] if m.startswith("f") == final and not daemons.get(m)]
        after = tuple(draw(st.lists(st.sampled_from(earlier), unique=True, max_size=2))) if earlier else ()
        max_failures = draw(st.integers(0, 3))
        ephemeral = not final and draw(st.booleans()) and draw(st.booleans())
        daemon = ephemeral and draw(st.booleans())
        daemons[name] = daemon
        exits = tuple(draw(st.lists(st.sampled_from([0, 0, 1, 2]), min_size=1, max_size=4)))
        if max_failures == 0:
            exits = (*exits[:-1], 0)  # retried forever: it must succeed at last
        timeout = None if max_failures == 0 else draw(st.none() | st.sampled_from([2.0, 4.0, 8.0]))
        processes.append(
            Process(
                name,
                cmd="x",
                after=after,
                max_failures=max_failures,
                daemon=daemon,
                ephemeral=ephemeral,
                final=final,
                min_duration=draw(st.sampled_from([0.0, 0.0, 1.0, 4.0])),
                timeout=timeout,
            )
        )
        behaviours[name] = Behaviour(
            exits=exits,
            duration=tuple(draw(st.lists(DURATIONS, min_size=1, max_size=3))),
            ignores_term=draw(st.booleans()),
            term_exit=draw(st.sampled_from([0.0, 0.5, 2.0])),
            lost=draw(st.sampled_from([0, 0, 0, 1, 2, 6])),
            dies_by=SIGKILL if max_failures > 0 and draw(st.integers(0, 9)) == 0 else None,
        )
    task = Task(
        "t",
        tuple(processes),
        max_failures=draw(st.integers(0, 3)),
        max_concurrency=draw(st.integers(0, 3)),
        finalization_wait=draw(st.sampled_from([1.0, 5.0, 20.0])),
        kill_grace=draw(st.sampled_from([0.0, 1.0, 3.0])),
    )
    return task, behaviours


def requests(job: bool = False) -> st.SearchStrategy[list[Request]]:
    request = st.builds(
        lambda action, at, grace: Request(action, at, grace=grace if action == "kill" else None),
        st.sampled_from(["kill", "pause", "resume", "resume"]),
        st.floats(0, 40).map(lambda t: round(t * 2) / 2),
        st.none() | st.sampled_from([0.0, 2.0]),
    )
    return st.lists(request, max_size=4)


def task_sim(task: Task, behaviours: dict[str, Behaviour], reqs: list[Request]) -> Sim:
    def fresh() -> Supervision:
        return Supervision("task", "t", lambda _j: task, 1, keep_finished=True)

    return Sim(fresh(), lambda _j, p: behaviours[p], requests=list(reqs), fresh=fresh, limit=LIMIT)


# -- checks ------------------------------------------------------------------------------------


def check_transitions(records: list[Record]) -> None:
    """Every state change allowed by the tables, checked apart from the fold."""
    runs: dict[tuple[int, str, int], RunState] = {}
    jobs: dict[int, TaskState] = {}
    last_run: dict[tuple[int, str], int] = {}
    for rec in records:
        if isinstance(rec, RunUpdate):
            key = (rec.job, rec.process, rec.run)
            new = RunState(rec.state)
            if key not in runs:
                assert new is RunState.LAUNCHING, rec
                # run numbers per process strictly increase, across attempts too
                assert rec.run > last_run.get(key[:2], -1), rec
                last_run[key[:2]] = rec.run
                assert jobs.get(rec.job) in (TaskState.ACTIVE, TaskState.FINALIZING), rec
            else:
                assert new is runs[key] or new in RUN_TRANSITIONS[runs[key]], (runs[key], rec)
            runs[key] = new
        elif isinstance(rec, Transition) and rec.job != ENSEMBLE:
            old = jobs.get(rec.job, TaskState.PENDING)
            new = TaskState(rec.state)
            assert new is old or new in TASK_TRANSITIONS[old], (old, rec)
            jobs[rec.job] = new


def dump(sup: Supervision) -> dict[str, Any]:
    """What the fold knows, without the decide-time caches (dirty, wakeups, beats)."""
    jobs = {}
    for job, rt in sorted(sup.jobs.items()):
        jobs[job] = (
            rt.state,
            rt.attempt,
            rt.reason,
            rt.failed_cause,
            rt.kill_requested,
            rt.paused,
            sorted(rt.paused_processes),
            rt.retry_requested,
            dict(rt.next_run),
            rt.started_at,
            rt.finished_at,
            {
                name: (
                    p.failures,
                    p.lost,
                    p.succeeded,
                    p.dropped,
                    [
                        (
                            r.run,
                            r.state,
                            r.exit_code,
                            r.reason,
                            r.pid,
                            r.launched_at,
                            r.started_at,
                            r.finished_at,
                            r.signal_sent,
                            r.signal_reason,
                            r.term_sent_at,
                            r.paused_at,
                            r.paused_total,
                        )
                        for r in p.runs
                    ],
                )
                for name, p in rt.processes.items()
            },
        )
    return {
        "state": sup.state,
        "reason": sup.reason,
        "total": sup.total,
        "counts": dict(sup.counts),
        "states": list(sup.states),
        "attempts": list(sup.attempts),
        "exit_codes": list(sup.exit_codes),
        "live": sorted(sup.live),
        "next_new": sup.next_new,
        "halted": sup.halted,
        "failed": sorted(sup.failed_jobs),
        "retry": sorted(sup.retry_set()),
        "kill": sup.kill_requested,
        "paused": sup.paused,
        "jobs": jobs,
        "finished_at": sup.finished_at,
        "run_numbers": {job: dict(n) for job, n in sup.run_numbers.items()},
        "requeues": dict(sup.requeues),
        "hold": sup.hold,
        "yielded": sorted(sup.yielded),
    }


def check_valid_end(sim: Sim) -> None:
    sup = sim.sup
    for rt in sup.jobs.values():
        if rt.terminal:
            assert not rt.live_runs(), rt
            assert all(r.state in RUN_TERMINAL for p in rt.processes.values() for r in p.runs)
    if sup.terminal:
        assert not sim.live
        assert not sup.live
    else:
        # only a pause can leave work unfinished with nothing left to happen
        assert sup.paused or any(rt.paused or rt.paused_processes for rt in sup.jobs.values()), dump(sup)


# -- (a) any simulated sequence folds to a valid state -----------------------------------------


@SETTINGS
@given(tasks(), requests())
def test_simulated_task_records_fold_to_valid_state(
    spec: tuple[Task, dict[str, Behaviour]], reqs: list[Request]
) -> None:
    task, behaviours = spec
    sim = task_sim(task, behaviours, reqs)
    sim.run()
    check_transitions(sim.records)
    check_valid_end(sim)
    if not reqs:
        assert sim.sup.terminal


# -- (b) replay equals live, and recovery at any moment equals live ----------------------------


@SETTINGS
@given(tasks(), requests(), st.floats(0, 60).map(lambda t: round(t * 4) / 4))
def test_replay_and_recovery_equal_live(
    spec: tuple[Task, dict[str, Behaviour]], reqs: list[Request], cut: float
) -> None:
    task, behaviours = spec
    live = task_sim(task, behaviours, reqs)
    live.run()
    replayed = live.fresh()  # type: ignore[misc]
    for rec in live.records:
        replayed.apply(rec)
    assert dump(replayed) == dump(live.sup)

    recovered = task_sim(task, behaviours, reqs)
    recovered.recover_at = cut
    recovered.run()
    assert recovered.records == live.records
    assert dump(recovered.sup) == dump(live.sup)


# -- (c) records survive encode/decode ---------------------------------------------------------


@SETTINGS
@given(tasks(), requests())
def test_records_round_trip_and_fold_the_same(
    spec: tuple[Task, dict[str, Behaviour]], reqs: list[Request]
) -> None:
    task, behaviours = spec
    sim = task_sim(task, behaviours, reqs)
    sim.run()
    decoded = [decode(encode(r)) for r in sim.records]
    assert decoded == sim.records
    assert [type(d) for d in decoded] == [type(r) for r in sim.records]
    replayed = sim.fresh()  # type: ignore[misc]
    for rec in decoded:
        replayed.apply(rec)
    assert dump(replayed) == dump(sim.sup)


# -- (d) ensembles -----------------------------------------------------------------------------


@st.composite
def ensembles(draw: st.DrawFn) -> tuple[Task, int, Policy, Callable[[int, str], Behaviour], list[Request]]:
    task = Task(
        "job",
        (Process("main", cmd="x", timeout=draw(st.none() | st.just(6.0))),),
        kill_grace=draw(st.sampled_from([0.0, 1.0])),
    )
    total = draw(st.integers(1, 25))
    policy = Policy(
        job_limit=draw(st.integers(0, 5)),
        retries=draw(st.integers(0, 2)),
        retry_backoff=draw(st.sampled_from([0.0, 0.5, 2.0])),
        halt=Halt(
            failures=draw(st.none() | st.integers(1, 5)),
            failure_rate=draw(st.none() | st.sampled_from([0.2, 0.5])),
            mode=draw(st.sampled_from(["finish", "kill"])),
        ),
    )
    table = draw(
        st.lists(
            st.builds(
                Behaviour,
                exits=st.lists(st.sampled_from([0, 0, 1]), min_size=1, max_size=3).map(tuple),
                duration=st.lists(DURATIONS, min_size=1, max_size=2).map(tuple),
                ignores_term=st.booleans(),
                lost=st.sampled_from([0, 0, 1]),
            ),
            min_size=1,
            max_size=5,
        )
    )
    reqs = draw(
        st.lists(
            st.builds(
                Request,
                st.sampled_from(["kill", "pause", "resume", "resume"]),
                st.floats(0, 30).map(lambda t: round(t * 2) / 2),
                st.none() | st.integers(0, total - 1),
            ),
            max_size=3,
        )
    )
    return task, total, policy, lambda job, _p: table[job % len(table)], reqs


@SETTINGS
@given(ensembles(), st.floats(0, 40).map(lambda t: round(t * 4) / 4))
def test_ensemble_job_limit_and_replay(scenario: tuple[Any, ...], cut: float) -> None:
    task, total, policy, behaviour, reqs = scenario

    def fresh() -> Supervision:
        return Supervision("ensemble", "e", lambda _j: task, total, policy)

    def check(sup: Supervision, _rec: Record) -> None:
        live = sum(
            1
            for j in range(sup.total)
            if sup.job_state(j) in (TaskState.ACTIVE, TaskState.CLEANING, TaskState.FINALIZING)
        )
        assert live == len(sup.live)
        if policy.job_limit:
            assert live <= policy.job_limit
        assert sum(sup.counts.values()) == sup.total
        assert all(v >= 0 for v in sup.counts.values())

    sim = Sim(fresh(), behaviour, requests=list(reqs), check=check, fresh=fresh, limit=LIMIT)
    sim.run()
    check_transitions(sim.records)
    check_valid_end(sim)
    if sim.sup.terminal:
        ended = [r for r in sim.records if isinstance(r, Transition) and r.job == ENSEMBLE][-1]
        if ended.state == "SUCCESS":
            assert sim.sup.counts[TaskState.SUCCESS] == total

    replayed = fresh()
    for rec in sim.records:
        replayed.apply(decode(encode(rec)))
    assert dump(replayed) == dump(sim.sup)

    recovered = Sim(
        fresh(), behaviour, requests=list(reqs), check=check, fresh=fresh, recover_at=cut, limit=LIMIT
    )
    recovered.run()
    assert recovered.records == sim.records
