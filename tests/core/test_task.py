"""One task, driven through the pure core with a fake clock (tests/core/sim.py)."""

from __future__ import annotations

from sim import Behaviour, run_updates, script, signals, simulate

from corral.core.records import Record, Request, RunUpdate, Signal, Transition
from corral.core.states import RunState, TaskState
from corral.core.supervision import Supervision
from corral.core.task import MAX_LOST_RUNS, SIGKILL, SIGTERM
from corral.spec.model import Process, Task


def proc(name: str, **kw: object) -> Process:
    return Process(name, cmd=f"run {name}", **kw)  # type: ignore[arg-type]


def task(*processes: Process, **kw: object) -> Task:
    return Task("t", tuple(processes), **kw)  # type: ignore[arg-type]


def transitions(records: list[Record]) -> list[str]:
    return [r.state for r in records if isinstance(r, Transition)]


def ends(records: list[Record], process: str) -> list[str]:
    return [
        r.state for r in run_updates(records, process) if r.state in ("SUCCESS", "FAILED", "KILLED", "LOST")
    ]


def first_at(records: list[Record], process: str, state: str) -> float:
    return next(r.at for r in run_updates(records, process, state))


def live_runs_after_each_record(sup: Supervision, rec: Record, counts: list[int]) -> None:
    rt = sup.jobs[0]
    counts.append(len(rt.live_runs()))


# -- ordering ----------------------------------------------------------------------------------


def test_ordering_graph_respects_after() -> None:
    graph = {
        "a": (),
        "b": ("a",),
        "c": ("a",),
        "d": ("b", "c"),
        "e": (),
        "f": ("d", "e"),
    }
    durations = {"a": 1.0, "b": 3.0, "c": 1.0, "d": 1.0, "e": 7.0, "f": 1.0}
    t = task(*(proc(n, after=deps) for n, deps in graph.items()))
    sim = simulate(t, script(**{n: Behaviour(duration=d) for n, d in durations.items()}))
    recs = sim.records
    assert sim.sup.state is TaskState.SUCCESS
    for name, deps in graph.items():
        launched = first_at(recs, name, "LAUNCHING")
        for dep in deps:
            assert first_at(recs, dep, "SUCCESS") <= launched, (name, dep)
        # and nothing waits longer than its last dependency
        expected = max((first_at(recs, d, "SUCCESS") for d in deps), default=0.0)
        assert launched == expected
        idx_launch = next(i for i, r in enumerate(recs) if isinstance(r, RunUpdate) and r.process == name)
        for dep in deps:
            idx_dep = next(
                i
                for i, r in enumerate(recs)
                if isinstance(r, RunUpdate) and r.process == dep and r.state == "SUCCESS"
            )
            assert idx_dep < idx_launch
    assert first_at(recs, "f", "SUCCESS") == 8.0  # e (7 s) gates f


# -- failures ----------------------------------------------------------------------------------


def test_process_max_failures_retries_until_success() -> None:
    t = task(proc("flaky", max_failures=3))
    sim = simulate(t, script(flaky=Behaviour(exits=(1, 1, 0))))
    assert sim.sup.state is TaskState.SUCCESS
    assert ends(sim.records, "flaky") == ["FAILED", "FAILED", "SUCCESS"]
    assert [r.run for r in run_updates(sim.records, "flaky", "LAUNCHING")] == [0, 1, 2]
    assert sim.sup.jobs[0].processes["flaky"].failures == 2


def test_process_max_failures_zero_retries_forever() -> None:
    t = task(proc("flaky", max_failures=0))
    sim = simulate(t, script(flaky=Behaviour(exits=(1,) * 20 + (0,))))
    assert sim.sup.state is TaskState.SUCCESS
    assert len(ends(sim.records, "flaky")) == 21


def test_permanent_failure_stops_dependents_and_fails_task() -> None:
    t = task(
        proc("a"),
        proc("b", after=("a",)),
        proc(
            "side",
        ),
        max_failures=1,
    )
    sim = simulate(t, script(a=Behaviour(exits=(3,)), side=Behaviour(duration=10.0)))
    assert sim.sup.state is TaskState.FAILED
    assert not run_updates(sim.records, "b")  # never launched
    assert ends(sim.records, "side") == ["KILLED"]  # stopped in CLEANING
    assert transitions(sim.records) == ["ACTIVE", "CLEANING", "FAILED"]
    assert sim.sup.jobs[0].reason == "failed"
    assert sim.sup.summary(0).exit_code == -SIGTERM


def test_failures_within_task_max_failures_are_tolerated() -> None:
    t = task(proc("a"), proc("b"), proc("c"), max_failures=3)
    sim = simulate(t, script(a=Behaviour(exits=(1,)), b=Behaviour(exits=(2,))))
    assert ends(sim.records, "a") == ["FAILED"]
    assert ends(sim.records, "b") == ["FAILED"]
    assert ends(sim.records, "c") == ["SUCCESS"]
    assert sim.sup.state is TaskState.SUCCESS


def test_deadlock_is_failure() -> None:
    t = task(proc("a"), proc("b", after=("a",)), max_failures=0)
    sim = simulate(t, script(a=Behaviour(exits=(1,))))
    assert sim.sup.state is TaskState.FAILED
    assert sim.sup.jobs[0].reason == "deadlock"
    assert not run_updates(sim.records, "b")


# -- ephemeral, final --------------------------------------------------------------------------


def test_ephemeral_process_killed_when_rest_is_done() -> None:
    t = task(proc("main"), proc("sidecar", ephemeral=True))
    sim = simulate(t, script(main=Behaviour(duration=5.0), sidecar=Behaviour(duration=1000.0)))
    assert sim.sup.state is TaskState.SUCCESS
    sig = signals(sim.records, "sidecar")
    assert [(s.sig, s.at) for s in sig] == [(SIGTERM, 5.0)]
    assert ends(sim.records, "sidecar") == ["KILLED"]
    assert transitions(sim.records) == ["ACTIVE", "CLEANING", "SUCCESS"]


def _finals_task(**kw: object) -> Task:
    return task(
        proc("main"),
        proc("f1", final=True),
        proc("f2", final=True, after=("f1",)),
        finalization_wait=30.0,
        **kw,
    )


def _check_finals_in_order(records: list[Record], after: float) -> None:
    assert ends(records, "f1") == ["SUCCESS"]
    assert ends(records, "f2") == ["SUCCESS"]
    assert first_at(records, "f1", "LAUNCHING") >= after
    assert first_at(records, "f1", "SUCCESS") <= first_at(records, "f2", "LAUNCHING")


def test_final_processes_run_after_success() -> None:
    sim = simulate(_finals_task())
    assert sim.sup.state is TaskState.SUCCESS
    _check_finals_in_order(sim.records, first_at(sim.records, "main", "SUCCESS"))
    assert transitions(sim.records) == ["ACTIVE", "FINALIZING", "SUCCESS"]


def test_final_processes_run_after_failure() -> None:
    sim = simulate(_finals_task(), script(main=Behaviour(exits=(1,))))
    assert sim.sup.state is TaskState.FAILED
    _check_finals_in_order(sim.records, first_at(sim.records, "main", "FAILED"))
    assert transitions(sim.records) == ["ACTIVE", "FINALIZING", "FAILED"]


def test_final_processes_run_after_kill() -> None:
    sim = simulate(_finals_task(), script(main=Behaviour(duration=100.0)), [Request("kill", 2.0)])
    assert sim.sup.state is TaskState.KILLED
    assert ends(sim.records, "main") == ["KILLED"]
    _check_finals_in_order(sim.records, 2.0)
    assert transitions(sim.records) == ["ACTIVE", "CLEANING", "FINALIZING", "KILLED"]


def test_final_processes_killed_at_finalization_wait() -> None:
    t = _finals_task(kill_grace=2.0)
    sim = simulate(t, script(f1=Behaviour(duration=100.0, ignores_term=True)))
    # main ends at 1, FINALIZING until 31: TERM then, KILL at 33
    sig = signals(sim.records, "f1")
    assert [(s.sig, s.at, s.reason) for s in sig] == [
        (SIGTERM, 31.0, "finalization"),
        (SIGKILL, 33.0, "finalization"),
    ]
    assert ends(sim.records, "f1") == ["KILLED"]
    assert not run_updates(sim.records, "f2")
    assert sim.sup.state is TaskState.SUCCESS  # the regular processes succeeded
    assert sim.sup.finished_at == 33.0


# -- concurrency, daemon, min_duration ---------------------------------------------------------


def test_max_concurrency_serialises_runs() -> None:
    counts: list[int] = []
    t = task(*(proc(n) for n in "abcde"), max_concurrency=1)
    sim = simulate(
        t, script(Behaviour(duration=2.0)), check=lambda s, r: live_runs_after_each_record(s, r, counts)
    )
    assert sim.sup.state is TaskState.SUCCESS
    assert max(counts) == 1
    assert sim.sup.finished_at == 10.0


def test_max_concurrency_two() -> None:
    counts: list[int] = []
    t = task(*(proc(n) for n in "abcde"), max_concurrency=2)
    sim = simulate(
        t, script(Behaviour(duration=2.0)), check=lambda s, r: live_runs_after_each_record(s, r, counts)
    )
    assert max(counts) == 2
    assert sim.sup.finished_at == 6.0


def test_daemon_restarted_after_success() -> None:
    # the daemon keeps succeeding; its restarts stop when the task ends (it is ephemeral)
    t = task(proc("main"), proc("d", daemon=True, ephemeral=True))
    sim = simulate(t, script(main=Behaviour(duration=10.0), d=Behaviour(duration=3.0)))
    assert sim.sup.state is TaskState.SUCCESS
    assert ends(sim.records, "d") == ["SUCCESS", "SUCCESS", "SUCCESS", "KILLED"]
    assert [r.at for r in run_updates(sim.records, "d", "LAUNCHING")] == [0.0, 3.0, 6.0, 9.0]


def test_min_duration_delays_next_run() -> None:
    t = task(proc("a", max_failures=0, min_duration=5.0))
    sim = simulate(t, script(a=Behaviour(exits=(1, 1, 0), duration=1.0)))
    assert [r.at for r in run_updates(sim.records, "a", "LAUNCHING")] == [0.0, 5.0, 10.0]
    assert sim.sup.state is TaskState.SUCCESS


# -- timeouts and signals ----------------------------------------------------------------------


def test_run_timeout_term_then_kill_after_grace() -> None:
    t = task(proc("slow", timeout=10.0), kill_grace=3.0)
    sim = simulate(t, script(slow=Behaviour(duration=100.0, ignores_term=True)))
    sig = signals(sim.records, "slow")
    assert [(s.sig, s.at, s.reason) for s in sig] == [(SIGTERM, 10.0, "timeout"), (SIGKILL, 13.0, "timeout")]
    end = run_updates(sim.records, "slow", "FAILED")
    assert [(e.at, e.reason, e.exit_code) for e in end] == [(13.0, "timeout", -SIGKILL)]
    assert sim.sup.state is TaskState.FAILED


def test_run_timeout_obeyed_term_is_failed() -> None:
    t = task(proc("slow", timeout=10.0, max_failures=2), kill_grace=3.0)
    sim = simulate(t, script(slow=Behaviour(duration=(100.0, 1.0))))
    assert ends(sim.records, "slow") == ["FAILED", "SUCCESS"]
    assert run_updates(sim.records, "slow", "FAILED")[0].reason == "timeout"
    assert len(signals(sim.records)) == 1
    assert sim.sup.state is TaskState.SUCCESS


def test_run_killed_by_foreign_signal_counts_as_failure() -> None:
    t = task(proc("victim", max_failures=2))
    sim = simulate(t, script(victim=Behaviour(dies_by=SIGKILL)))
    ups = run_updates(sim.records, "victim", "FAILED")
    assert [(u.run, u.reason, u.exit_code) for u in ups] == [(0, "signal 9", -9), (1, "signal 9", -9)]
    assert sim.sup.state is TaskState.FAILED
    assert not signals(sim.records)


def test_kill_request_cleans_terms_kills_after_grace_and_finalizes() -> None:
    t = task(
        proc("stubborn"),
        proc("polite"),
        proc("fin", final=True),
        kill_grace=4.0,
    )
    beh = script(
        stubborn=Behaviour(duration=100.0, ignores_term=True),
        polite=Behaviour(duration=100.0, term_exit=1.0),
    )
    sim = simulate(t, beh, [Request("kill", 5.0)])
    assert transitions(sim.records) == ["ACTIVE", "CLEANING", "FINALIZING", "KILLED"]
    assert [(s.sig, s.at, s.reason) for s in signals(sim.records, "stubborn")] == [
        (SIGTERM, 5.0, "kill"),
        (SIGKILL, 9.0, "kill"),
    ]
    assert [(s.sig, s.at) for s in signals(sim.records, "polite")] == [(SIGTERM, 5.0)]
    assert [(u.at, u.exit_code) for u in run_updates(sim.records, "polite", "KILLED")] == [(6.0, -SIGTERM)]
    assert [(u.at, u.exit_code) for u in run_updates(sim.records, "stubborn", "KILLED")] == [(9.0, -SIGKILL)]
    assert first_at(sim.records, "fin", "LAUNCHING") == 9.0
    assert sim.sup.state is TaskState.KILLED


def test_kill_request_grace_overrides_task_grace() -> None:
    t = task(proc("stubborn"), kill_grace=30.0)
    sim = simulate(t, script(Behaviour(duration=100.0, ignores_term=True)), [Request("kill", 1.0, grace=0.5)])
    assert [(s.sig, s.at) for s in signals(sim.records)] == [(SIGTERM, 1.0), (SIGKILL, 1.5)]
    assert sim.sup.state is TaskState.KILLED


# -- pause -------------------------------------------------------------------------------------


def test_pause_stops_runs_and_resume_continues() -> None:
    t = task(proc("a"), proc("b"))
    sim = simulate(t, script(Behaviour(duration=10.0)), [Request("pause", 4.0), Request("resume", 20.0)])
    paused = run_updates(sim.records, state="PAUSED")
    assert sorted((u.process, u.at, u.reason) for u in paused) == [("a", 4.0, "pause"), ("b", 4.0, "pause")]
    resumed = [u for u in run_updates(sim.records, state="RUNNING") if u.reason == "resume"]
    assert sorted((u.process, u.at) for u in resumed) == [("a", 20.0), ("b", 20.0)]
    # 4 s before the pause, 6 s after the resume
    assert [u.at for u in run_updates(sim.records, state="SUCCESS")] == [26.0, 26.0]
    assert sim.sup.state is TaskState.SUCCESS


def test_paused_time_does_not_count_against_timeout() -> None:
    t = task(proc("a", timeout=10.0))
    sim = simulate(t, script(a=Behaviour(duration=9.0)), [Request("pause", 5.0), Request("resume", 100.0)])
    assert not signals(sim.records)
    assert [u.at for u in run_updates(sim.records, "a", "SUCCESS")] == [104.0]
    assert sim.sup.state is TaskState.SUCCESS
    run = sim.sup.jobs[0].processes["a"].runs[0]
    assert run.active_seconds(104.0) == 9.0


def test_timeout_fires_after_resume_on_active_time() -> None:
    t = task(proc("a", timeout=10.0), kill_grace=1.0)
    sim = simulate(t, script(a=Behaviour(duration=50.0)), [Request("pause", 5.0), Request("resume", 100.0)])
    assert [(s.sig, s.at) for s in signals(sim.records)] == [(SIGTERM, 105.0)]
    assert run_updates(sim.records, "a", "FAILED")[0].reason == "timeout"


def test_pause_one_process() -> None:
    t = task(proc("a"), proc("b"))
    sim = simulate(
        t,
        script(Behaviour(duration=10.0)),
        [Request("pause", 2.0, job=0, process="a"), Request("resume", 12.0, job=0, process="a")],
    )
    assert [u.process for u in run_updates(sim.records, state="PAUSED")] == ["a"]
    assert first_at(sim.records, "b", "SUCCESS") == 10.0
    assert first_at(sim.records, "a", "SUCCESS") == 20.0


def test_resume_one_process_after_a_task_wide_pause() -> None:
    # issue 9: `corral resume ID a` after `corral pause ID` did nothing
    t = task(proc("a"), proc("b"))
    sim = simulate(
        t,
        script(Behaviour(duration=10.0)),
        [Request("pause", 2.0), Request("resume", 5.0, process="a"), Request("resume", 30.0)],
    )
    resumed = [(u.process, u.at) for u in run_updates(sim.records, state="RUNNING") if u.reason == "resume"]
    assert resumed == [("a", 5.0), ("b", 30.0)]
    assert first_at(sim.records, "a", "SUCCESS") == 13.0  # 2 s before the pause, 8 s after
    assert first_at(sim.records, "b", "SUCCESS") == 38.0  # b stayed paused until the task resumed
    assert sim.sup.state is TaskState.SUCCESS


# -- lost runs ---------------------------------------------------------------------------------


def test_lost_runs_retried_without_counting_as_failures() -> None:
    t = task(proc("a", max_failures=1))
    sim = simulate(t, script(a=Behaviour(lost=2)))
    assert ends(sim.records, "a") == ["LOST", "LOST", "SUCCESS"]
    assert sim.sup.jobs[0].processes["a"].failures == 0
    assert sim.sup.state is TaskState.SUCCESS


def test_lost_runs_bounded_by_max_lost_runs() -> None:
    t = task(proc("a", max_failures=0))
    sim = simulate(t, script(a=Behaviour(lost=100)))
    assert ends(sim.records, "a") == ["LOST"] * MAX_LOST_RUNS
    assert sim.sup.state is TaskState.FAILED


# -- odd orders of records ---------------------------------------------------------------------


def test_signal_to_launching_run_then_exit() -> None:
    """A kill that arrives before the spawn reported RUNNING still ends the task KILLED."""
    sup = Supervision("task", "t", lambda _j: task(proc("a")), 1, keep_finished=True)
    for rec in sup.decide(0.0).records:
        sup.apply(rec)
    launch = sup.decide(0.0).records
    assert [type(r) for r in launch] == [RunUpdate]
    sup.apply(launch[0])
    sup.apply(Request("kill", 0.5))
    d = sup.decide(0.5)
    assert [r.state for r in d.records if isinstance(r, Transition)] == ["CLEANING"]
    for rec in d.records:
        sup.apply(rec)
    d = sup.decide(0.5)
    assert [type(r) for r in d.records] == [Signal]
    for rec in d.records:
        sup.apply(rec)
    sup.apply(RunUpdate(0, "a", 0, RunState.KILLED.value, 0.6, exit_code=-15))
    d = sup.decide(0.6)
    assert [r.state for r in d.records if isinstance(r, Transition)] == ["KILLED"]


# -- regressions found by the property tests ---------------------------------------------------


def test_kill_escalation_sends_one_kill() -> None:
    """SIGKILL (9) is numerically below SIGTERM (15): the fold must still know KILL was sent."""
    t = task(proc("stubborn"), kill_grace=1.0)
    sim = simulate(t, script(Behaviour(duration=100.0, ignores_term=True)), [Request("kill", 1.0)])
    assert [s.sig for s in signals(sim.records)] == [SIGTERM, SIGKILL]
    assert sim.sup.jobs[0].processes["stubborn"].runs[0].signal_sent == SIGKILL


def test_kill_while_paused_runs_finalizers() -> None:
    t = task(proc("main"), proc("fin", final=True), finalization_wait=30.0)
    sim = simulate(t, script(main=Behaviour(duration=100.0)), [Request("pause", 2.0), Request("kill", 5.0)])
    assert first_at(sim.records, "fin", "LAUNCHING") == 5.0
    assert ends(sim.records, "fin") == ["SUCCESS"]
    assert sim.sup.state is TaskState.KILLED
    assert sim.sup.finished_at == 6.0  # not at the finalization_wait deadline


def test_deadlock_behind_a_chain_of_blocked_processes() -> None:
    # c waits on b, which waits on a, which failed: c is blocked for good too
    t = task(proc("a"), proc("b", after=("a",)), proc("c", after=("b",)), max_failures=0)
    sim = simulate(t, script(a=Behaviour(exits=(1,))))
    assert sim.sup.state is TaskState.FAILED
    assert sim.sup.jobs[0].reason == "deadlock"


def test_deadlock_not_hidden_by_a_running_ephemeral_process() -> None:
    t = task(proc("a"), proc("b", after=("a",)), proc("side", ephemeral=True, daemon=True), max_failures=0)
    sim = simulate(t, script(a=Behaviour(exits=(1,)), side=Behaviour(duration=3.0)))
    assert sim.sup.state is TaskState.FAILED
    assert sim.sup.jobs[0].reason == "deadlock"
    assert ends(sim.records, "side")[-1] == "KILLED"


def test_max_concurrency_daemon_does_not_starve_others() -> None:
    t = task(proc("d", daemon=True, ephemeral=True), proc("work"), max_concurrency=1)
    sim = simulate(t, script(d=Behaviour(duration=2.0), work=Behaviour(duration=1.0)))
    assert first_at(sim.records, "work", "LAUNCHING") == 2.0
    assert sim.sup.state is TaskState.SUCCESS
