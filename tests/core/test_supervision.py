"""Ensembles: job limit, retries, halt policy, dynamic submission, retry-failed, heartbeats."""

from __future__ import annotations

from collections.abc import Callable

from sim import Behaviour, Sim, simulate_ensemble

from corral.core.records import JobsAdded, Record, Request, RunUpdate, Signal, Submitted, Transition
from corral.core.states import ENSEMBLE, TASK_TERMINAL, TaskState
from corral.core.supervision import Policy, Supervision, fold
from corral.core.task import SIGKILL, SIGTERM
from corral.spec.model import Halt, Process, Resources, Task

ONE = Task("job", (Process("main", cmd="work"),))


def per_job(
    fail: frozenset[int] | set[int] = frozenset(), duration: float = 1.0
) -> Callable[[int, str], Behaviour]:
    def behaviour(job: int, _process: str) -> Behaviour:
        return Behaviour(exits=(1,) if job in fail else (0,), duration=duration)

    return behaviour


def limit_checker(limit: int, peaks: list[int]) -> Callable[[Supervision, Record], None]:
    def check(sup: Supervision, _rec: Record) -> None:
        live = sum(
            1
            for j in range(sup.total)
            if sup.job_state(j)
            in (TaskState.ACTIVE, TaskState.CLEANING, TaskState.FINALIZING, TaskState.SUBMITTED)
        )
        assert live == len(sup.live)
        assert live <= limit
        peaks.append(live)

    return check


def job_transitions(records: list[Record], job: int) -> list[Transition]:
    return [r for r in records if isinstance(r, Transition) and r.job == job]


def ensemble_end(records: list[Record]) -> Transition:
    ends = [r for r in records if isinstance(r, Transition) and r.job == ENSEMBLE]
    assert ends[0].state == "ACTIVE"
    assert len(ends) == 2, ends
    return ends[-1]


# -- scheduling --------------------------------------------------------------------------------


def test_job_limit_never_exceeded() -> None:
    peaks: list[int] = []
    durations = [1.0, 5.0, 2.0, 0.5, 3.0, 1.0, 4.0, 2.5, 1.5, 0.1] * 3

    def behaviour(job: int, _p: str) -> Behaviour:
        return Behaviour(duration=durations[job])

    sim = simulate_ensemble(ONE, 30, Policy(job_limit=4), behaviour, check=limit_checker(4, peaks))
    assert max(peaks) == 4
    assert sim.sup.state is TaskState.SUCCESS
    assert sim.sup.counts[TaskState.SUCCESS] == 30
    assert ensemble_end(sim.records).state == "SUCCESS"
    # each job started exactly once, in index order
    starts = [r.job for r in sim.records if isinstance(r, Transition) and r.state == "ACTIVE" and r.job >= 0]
    assert starts == list(range(30))


def test_unlimited_job_limit_starts_everything() -> None:
    sim = simulate_ensemble(ONE, 50, Policy(job_limit=0), per_job())
    assert sim.sup.finished_at == 1.0
    assert sim.sup.state is TaskState.SUCCESS


def test_failed_job_fails_ensemble() -> None:
    sim = simulate_ensemble(ONE, 5, Policy(job_limit=2), per_job(fail={3}))
    assert ensemble_end(sim.records).state == "FAILED"
    assert sim.sup.counts[TaskState.FAILED] == 1
    assert sim.sup.counts[TaskState.SUCCESS] == 4
    assert sim.sup.summary(3).exit_code == 1
    assert sim.sup.failed_jobs == {3}


def test_retries_with_backoff() -> None:
    def behaviour(job: int, _p: str) -> Behaviour:
        return Behaviour(exits=(1, 1, 1, 0) if job == 1 else (0,), duration=1.0)

    sim = simulate_ensemble(ONE, 2, Policy(job_limit=2, retries=3, retry_backoff=2.0), behaviour)
    trs = job_transitions(sim.records, 1)
    assert [(t.state, t.attempt, t.at) for t in trs] == [
        ("ACTIVE", 0, 0.0),
        ("FAILED", 0, 1.0),
        ("PENDING", 1, 1.0),
        ("ACTIVE", 1, 3.0),
        ("FAILED", 1, 4.0),  # backoff 2
        ("PENDING", 2, 4.0),
        ("ACTIVE", 2, 8.0),
        ("FAILED", 2, 9.0),  # backoff 4
        ("PENDING", 3, 9.0),
        ("ACTIVE", 3, 17.0),
        ("SUCCESS", 3, 18.0),  # backoff 8
    ]
    # run numbers go on across attempts
    assert [
        r.run for r in sim.records if isinstance(r, RunUpdate) and r.job == 1 and r.state == "LAUNCHING"
    ] == [
        0,
        1,
        2,
        3,
    ]
    assert sim.sup.summary(1).attempt == 3
    assert sim.sup.state is TaskState.SUCCESS


def test_retries_exhausted_fail_the_ensemble() -> None:
    sim = simulate_ensemble(ONE, 3, Policy(job_limit=3, retries=2, retry_backoff=0.5), per_job(fail={0}))
    assert [t.state for t in job_transitions(sim.records, 0)].count("ACTIVE") == 3
    assert sim.sup.summary(0).attempt == 2
    assert sim.sup.state is TaskState.FAILED
    assert sim.sup.counts[TaskState.FAILED] == 1


def test_retry_waits_for_a_free_slot() -> None:
    peaks: list[int] = []
    sim = simulate_ensemble(
        ONE,
        6,
        Policy(job_limit=2, retries=1, retry_backoff=0.0),
        per_job(fail={0}),
        check=limit_checker(2, peaks),
    )
    assert max(peaks) == 2
    assert sim.sup.counts[TaskState.FAILED] == 1
    assert sim.sup.counts[TaskState.SUCCESS] == 5


# -- halt policy -------------------------------------------------------------------------------


def test_halt_by_count_finish_mode_lets_running_jobs_finish() -> None:
    def behaviour(job: int, _p: str) -> Behaviour:
        return Behaviour(exits=(1,) if job < 2 else (0,), duration=1.0 if job < 2 else 10.0)

    sim = simulate_ensemble(ONE, 20, Policy(job_limit=4, halt=Halt(failures=2, mode="finish")), behaviour)
    halts = [r for r in sim.records if isinstance(r, Request) and r.action == "halt"]
    assert len(halts) == 1 and halts[0].at == 1.0
    assert not [r for r in sim.records if isinstance(r, Signal)]
    # jobs 2 and 3 were running: they finish; nothing else starts
    assert sim.sup.summary(2).state is TaskState.SUCCESS
    assert sim.sup.summary(3).state is TaskState.SUCCESS
    assert sim.sup.counts[TaskState.PENDING] == 16
    end = ensemble_end(sim.records)
    assert (end.state, end.reason, end.at) == ("FAILED", "halt policy", 10.0)


def test_halt_by_count_kill_mode_kills_running_jobs() -> None:
    def behaviour(job: int, _p: str) -> Behaviour:
        return Behaviour(exits=(1,) if job < 2 else (0,), duration=1.0 if job < 2 else 10.0)

    sim = simulate_ensemble(ONE, 20, Policy(job_limit=4, halt=Halt(failures=2, mode="kill")), behaviour)
    assert [(s.job, s.sig, s.at) for s in sim.records if isinstance(s, Signal)] == [
        (2, SIGTERM, 1.0),
        (3, SIGTERM, 1.0),
    ]
    assert sim.sup.summary(2).state is TaskState.KILLED
    assert sim.sup.summary(3).state is TaskState.KILLED
    assert sim.sup.counts[TaskState.PENDING] == 16
    assert ensemble_end(sim.records).state == "FAILED"


def test_halt_by_rate() -> None:
    # every third job fails: 1/3 >= 0.3 once 10 have finished
    def behaviour(job: int, _p: str) -> Behaviour:
        return Behaviour(exits=(1,) if job % 3 == 2 else (0,), duration=1.0)

    sim = simulate_ensemble(ONE, 100, Policy(job_limit=1, halt=Halt(failure_rate=0.3)), behaviour)
    halts = [r for r in sim.records if isinstance(r, Request) and r.action == "halt"]
    assert len(halts) == 1
    finished = sum(sim.sup.counts[s] for s in TASK_TERMINAL)
    assert finished == 10  # judged at the 10th finished job, nothing started after
    assert halts[0].at == 10.0
    assert sim.sup.state is TaskState.FAILED


def test_halt_rate_not_reached() -> None:
    def behaviour(job: int, _p: str) -> Behaviour:
        return Behaviour(exits=(1,) if job % 10 == 0 else (0,), duration=1.0)

    sim = simulate_ensemble(ONE, 40, Policy(job_limit=5, halt=Halt(failure_rate=0.5)), behaviour)
    assert not [r for r in sim.records if isinstance(r, Request)]
    assert sim.sup.counts[TaskState.FAILED] == 4
    assert sim.sup.counts[TaskState.SUCCESS] == 36


# -- end states, kill --------------------------------------------------------------------------


def test_ensemble_kill_request() -> None:
    sim = simulate_ensemble(
        ONE, 10, Policy(job_limit=3), per_job(duration=5.0), requests=[Request("kill", 7.0)]
    )
    assert ensemble_end(sim.records).state == "KILLED"
    assert sim.sup.counts[TaskState.SUCCESS] == 3
    assert sim.sup.counts[TaskState.KILLED] == 3
    assert sim.sup.counts[TaskState.PENDING] == 4


def test_kill_one_job() -> None:
    sim = simulate_ensemble(
        ONE, 4, Policy(job_limit=4), per_job(duration=5.0), requests=[Request("kill", 1.0, job=2)]
    )
    assert sim.sup.summary(2).state is TaskState.KILLED
    assert sim.sup.counts[TaskState.SUCCESS] == 3
    assert ensemble_end(sim.records).state == "FAILED"


# -- dynamic submission ------------------------------------------------------------------------


def test_jobs_added_grow_the_ensemble() -> None:
    peaks: list[int] = []
    sim = simulate_ensemble(
        ONE,
        2,
        Policy(job_limit=2),
        per_job(duration=1.0),
        requests=[JobsAdded(-1, [{"x": 1}, {"x": 2}, {"x": 3}], 0.5)],
        check=limit_checker(2, peaks),
    )
    assert sim.sup.total == 5
    assert [r.first for r in sim.sup.added] == [2]
    assert sim.sup.counts[TaskState.SUCCESS] == 5
    assert sim.sup.state is TaskState.SUCCESS
    assert ensemble_end(sim.records).at == 3.0  # 2 at 0, 2 at 1, 1 at 2


def test_jobs_added_fold_and_counts() -> None:
    sup = Supervision("ensemble", "e", lambda _j: ONE, 1, Policy(job_limit=0))
    sup.apply(Transition(ENSEMBLE, "ACTIVE", 0.0))
    sup.apply(JobsAdded(1, [{}, {}], 0.0))
    assert sup.total == 3
    assert sup.counts[TaskState.PENDING] == 3
    d = sup.decide(0.0)
    assert [(r.job, r.state) for r in d.records] == [(0, "ACTIVE"), (1, "ACTIVE"), (2, "ACTIVE")]


# -- retry-failed ------------------------------------------------------------------------------


def test_retry_failed_reruns_only_failed_jobs() -> None:
    fail_once: set[int] = {1, 3}
    runs: dict[int, int] = {}

    def behaviour(job: int, _p: str) -> Behaviour:
        # the first run of jobs 1 and 3 fails; later runs succeed
        return Behaviour(exits=(1, 0) if job in fail_once else (0,), duration=1.0)

    sim = simulate_ensemble(ONE, 5, Policy(job_limit=5), behaviour, keep_finished=False)
    assert sim.sup.state is TaskState.FAILED
    sim.records.append(Request("retry-failed", 10.0))
    sim.sup.apply(sim.records[-1])
    sim.now = 10.0
    sim.run()
    assert sim.sup.state is TaskState.SUCCESS
    for job in range(5):
        starts = [t for t in job_transitions(sim.records, job) if t.state == "ACTIVE"]
        runs[job] = len(starts)
    assert runs == {0: 1, 1: 2, 2: 1, 3: 2, 4: 1}
    again = [t for t in sim.records if isinstance(t, Transition) and t.state == "PENDING"]
    assert [(t.job, t.reason, t.attempt) for t in again] == [(1, "retry-failed", 1), (3, "retry-failed", 1)]
    ends = [r for r in sim.records if isinstance(r, Transition) and r.job == ENSEMBLE]
    assert [e.state for e in ends] == ["ACTIVE", "FAILED", "SUCCESS"]


def test_retry_failed_numbers_runs_on_after_the_job_was_forgotten() -> None:
    """A run's identity (job, process, run) is unique in a task: a failed job forgotten by an
    ensemble keeps its run numbers for `--retry-failed`."""
    behaviour = Behaviour(exits=(1, 0), duration=1.0)
    sim = simulate_ensemble(ONE, 2, Policy(job_limit=2), lambda job, _p: behaviour, keep_finished=False)
    assert sim.sup.state is TaskState.FAILED and not sim.sup.jobs
    sim.records.append(Request("retry-failed", 10.0))
    sim.sup.apply(sim.records[-1])
    sim.now = 10.0
    sim.run()
    launches = [(r.job, r.run) for r in sim.records if isinstance(r, RunUpdate) and r.state == "LAUNCHING"]
    assert sorted(launches) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    replay = fold(sim.records, Supervision("ensemble", "e", lambda _j: ONE, 2, Policy(job_limit=2)))
    assert replay.state is TaskState.SUCCESS  # a replay agrees


# -- memory ------------------------------------------------------------------------------------


def test_finished_jobs_forgotten_but_counted() -> None:
    sizes: list[int] = []
    sim = simulate_ensemble(
        ONE,
        200,
        Policy(job_limit=8),
        per_job(fail=set(range(0, 200, 7))),
        check=lambda s, _r: sizes.append(len(s.jobs)),
    )
    assert max(sizes) <= 8 + 1  # the live jobs, plus one just ended in the same turn
    assert sim.sup.jobs == {}
    assert sim.sup.counts[TaskState.FAILED] == 29
    assert sim.sup.counts[TaskState.SUCCESS] == 171
    assert sum(sim.sup.counts.values()) == 200
    assert [s.state for s in sim.sup.summaries()].count(TaskState.SUCCESS) == 171
    assert sim.sup.summary(7).exit_code == 1 and sim.sup.summary(8).exit_code == 0


def test_keep_finished_keeps_detail() -> None:
    sim = simulate_ensemble(ONE, 5, Policy(job_limit=2), per_job(), keep_finished=True)
    assert sorted(sim.sup.jobs) == [0, 1, 2, 3, 4]
    assert all(rt.processes["main"].runs[0].exit_code == 0 for rt in sim.sup.jobs.values())


# -- heartbeat ---------------------------------------------------------------------------------


def test_heartbeat_silence_kills_the_job() -> None:
    sim = simulate_ensemble(
        ONE, 2, Policy(job_limit=2, heartbeat=5.0), per_job(duration=100.0), beat_every={1: 2.0}
    )
    sig = [s for s in sim.records if isinstance(s, Signal)]
    assert [(s.job, s.sig, s.at, s.reason) for s in sig] == [(0, SIGTERM, 5.0, "heartbeat")]
    assert sim.sup.summary(0).state is TaskState.FAILED
    ended = [r for r in sim.records if isinstance(r, RunUpdate) and r.job == 0 and r.state == "FAILED"]
    assert ended[0].reason == "heartbeat"
    assert sim.sup.summary(1).state is TaskState.SUCCESS


def test_heartbeat_silence_escalates_to_kill() -> None:
    task = Task("job", (Process("main", cmd="work"),), kill_grace=2.0)
    sim = Sim(
        Supervision("ensemble", "e", lambda _j: task, 1, Policy(job_limit=1, heartbeat=5.0)),
        lambda _j, _p: Behaviour(duration=100.0, ignores_term=True),
        limit=1000.0,
    )
    sim.run()
    sig = [(s.sig, s.at) for s in sim.records if isinstance(s, Signal)]
    assert sig == [(SIGTERM, 5.0), (SIGKILL, 7.0)]
    assert sim.sup.summary(0).state is TaskState.FAILED


def test_heartbeat_retry_gets_a_fresh_watchdog() -> None:
    sim = simulate_ensemble(
        ONE, 1, Policy(job_limit=1, retries=1, retry_backoff=1.0, heartbeat=5.0), per_job(duration=100.0)
    )
    sig = [(s.job, s.at) for s in sim.records if isinstance(s, Signal)]
    assert sig == [(0, 5.0), (0, 11.0)]  # attempt 1 starts at 6 after a 1 s backoff


def test_fold_of_records_equals_live() -> None:
    sim = simulate_ensemble(ONE, 12, Policy(job_limit=3, retries=1, retry_backoff=0.5), per_job(fail={2, 5}))
    replay = fold(
        sim.records, Supervision("ensemble", "e", lambda _j: ONE, 12, Policy(job_limit=3, retries=1))
    )
    assert list(replay.states) == list(sim.sup.states)
    assert replay.counts == sim.sup.counts
    assert replay.state is sim.sup.state


# -- recovery: a fold of the journal carries on exactly like the live supervisor -----------------


def test_recovery_after_a_retry_does_not_restart_the_job() -> None:
    def behaviour(job: int, _p: str) -> Behaviour:
        return Behaviour(exits=(1, 0) if job == 0 else (0,), duration=1.0 if job == 0 else 10.0)

    policy = Policy(job_limit=2, retries=2, retry_backoff=1.0)

    def fresh() -> Supervision:
        return Supervision("ensemble", "e", lambda _j: ONE, 2, policy)

    live = Sim(fresh(), behaviour)
    live.run()
    # job 0 failed at 1, was retried at 2 and succeeded at 3; job 1 runs until 10
    recovered = Sim(fresh(), behaviour, fresh=fresh, recover_at=5.0)
    recovered.run()
    assert recovered.records == live.records
    assert recovered.sup.retry_set() == set()


def test_replayed_retry_request_is_not_granted_twice() -> None:
    sup = Supervision("ensemble", "e", lambda _j: ONE, 1, Policy(job_limit=1, retries=3), keep_finished=True)
    records: list[Record] = [
        Transition(ENSEMBLE, "ACTIVE", 0.0),
        Transition(0, "ACTIVE", 0.0),
        Transition(0, "KILLED", 1.0, "killed"),
        Transition(ENSEMBLE, "FAILED", 1.0),
        Request("retry-failed", 2.0),
        Transition(0, "PENDING", 2.0, "retry-failed", 1),
    ]
    fold(records, sup)
    rt = sup.job(0)
    assert rt is not None and not rt.retry_requested
    assert sup.retry_set() == {0}


# -- requeues (remote jobs) ---------------------------------------------------------------------


def _remote(retries: int) -> Supervision:
    return Supervision("ensemble", "e", lambda _j: ONE, 1, Policy(retries=retries), remote=True)


def test_requeues_do_not_spend_the_retry_budget() -> None:
    """A preempted job requeued twice still has its one retry for a failure of its own."""
    from corral.core.records import Cause

    sup = _remote(retries=1)
    t = 0.0
    recs: list[Record] = [Transition(ENSEMBLE, "ACTIVE", t)]
    for attempt in range(2):
        recs += [
            Transition(0, "SUBMITTED", t, "", attempt),
            Transition(0, "ACTIVE", t, "", attempt),
            Transition(0, "LOST", t, "slurm PREEMPTED", attempt),
            Transition(0, "PENDING", t, "requeue", attempt + 1, cause=Cause.REQUEUE),
        ]
    recs += [
        Transition(0, "SUBMITTED", t, "", 2),
        Transition(0, "ACTIVE", t, "", 2),
        Transition(0, "FAILED", t, "", 2),
    ]
    fold(recs, sup)
    assert sup.requeues == {0: 2}
    retry = [r for r in sup.decide(100.0).records if isinstance(r, Transition) and r.job == 0]
    assert [(r.state, r.attempt, r.cause) for r in retry] == [("PENDING", 3, Cause.RETRY)]


def test_requeue_cause_of_an_old_journal_is_read_from_its_reason() -> None:
    """Journals written before `cause` existed said "requeue" in the reason text."""
    sup = _remote(retries=0)
    fold(
        [
            Transition(ENSEMBLE, "ACTIVE", 0.0),
            Transition(0, "SUBMITTED", 0.0),
            Transition(0, "LOST", 0.0, "slurm NODE_FAIL"),
            Transition(0, "PENDING", 0.0, "requeue", 1),
        ],
        sup,
    )
    assert sup.requeues == {0: 1}


def test_remote_silent_job_is_failed_by_the_watchdog_then_retried() -> None:
    """A remote job's runs are on its node: the watchdog records FAILED (cause HEARTBEAT) for
    the job itself, the fold remembers the batch id to cancel, and the retry policy applies."""
    from corral.core.records import Cause

    sup = Supervision("ensemble", "e", lambda _j: ONE, 1, Policy(retries=1, heartbeat=5.0), remote=True)
    fold(
        [
            Transition(ENSEMBLE, "ACTIVE", 0.0),
            Transition(0, "SUBMITTED", 0.0),
            Submitted([0], "77", 0.0, ["77_0"]),
            Transition(0, "ACTIVE", 1.0),
        ],
        sup,
    )
    sup.beat(0, 3.0)
    assert sup.decide(7.9).records == []  # the last beat (3.0) + 5 s is not due yet
    out = sup.decide(8.0).records
    assert [(r.job, r.state, r.cause) for r in out if isinstance(r, Transition)] == [
        (0, "FAILED", Cause.HEARTBEAT)
    ]
    assert not any(isinstance(r, Signal) for r in out)  # no run of it is known here
    fold(out, sup)
    assert sup.abandoned == {"77_0"}
    retry = [r for r in sup.decide(20.0).records if isinstance(r, Transition)]
    assert [(r.state, r.attempt, r.cause) for r in retry] == [("PENDING", 1, Cause.RETRY)]


# -- admission by declared resources -------------------------------------------------------------

GB = 1 << 30


def _resource_peaks(task: Task, total: int, policy: Policy) -> tuple[Sim, list[int]]:
    peaks: list[int] = []

    def check(sup: Supervision, _rec: Record) -> None:
        peaks.append(len(sup.live))

    return simulate_ensemble(task, total, policy, per_job(duration=1.0), check=check), peaks


def test_jobs_admitted_in_one_turn_count_against_the_hosts_memory() -> None:
    """Four 10 GB jobs on a 24 GB host: two at a time, never four (all were admitted at once)."""
    big = Task("job", (Process("main", cmd="work"),), resources=Resources(memory=10 * GB))
    sim, peaks = _resource_peaks(big, 4, Policy(job_limit=0, memory=24 * GB))
    assert max(peaks) == 2
    assert sim.sup.state is TaskState.SUCCESS and sim.sup.finished_at == 2.0  # fake clock: 2 waves


def test_jobs_admitted_in_one_turn_count_against_the_hosts_cpus() -> None:
    wide = Task("job", (Process("main", cmd="work"),), resources=Resources(cpus=3))
    sim, peaks = _resource_peaks(wide, 5, Policy(job_limit=0, cpus=8))
    assert max(peaks) == 2 and sim.sup.state is TaskState.SUCCESS


def test_a_job_larger_than_the_host_still_runs_alone() -> None:
    huge = Task("job", (Process("main", cmd="work"),), resources=Resources(memory=40 * GB))
    sim, peaks = _resource_peaks(huge, 3, Policy(job_limit=0, memory=24 * GB))
    assert max(peaks) == 1 and sim.sup.state is TaskState.SUCCESS and sim.sup.finished_at == 3.0
