"""The Slurm backend: jobs of an ensemble (or a whole task) run as Slurm jobs.

The launcher (our engine, with `Supervision.remote`) admits jobs as SUBMITTED transitions;
this backend turns each turn's admissions into one `sbatch --array` per homogeneous group,
records the Slurm ids (Submitted) before relying on them, and polls all jobs with ONE squeue
per interval. On the compute node, `corral slurm-job` supervises the job's task with the same
semantics and writes its journal under ROOT/ID/slurm/JOB/SLURM_ID/: that journal is
authoritative for the outcome; Slurm's view decides only what the node could not say
(TIMEOUT, PREEMPTED, NODE_FAIL: the node's supervisor was killed or the node is gone).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from corral.backends.slurm_client import SlurmClient
from corral.backends.slurm_errors import SlurmError, SlurmTimeout
from corral.backends.slurm_layout import (
    array_spec,
    job_task_file,
    node_layout_root,
    node_script,
    one_line,
    sbatch_options,
    slurm_dir,
)
from corral.backends.slurm_sbatch import SbatchRequest
from corral.backends.slurm_states import SlurmJobInfo, SlurmState
from corral.core.outcome import Observation, Seen, judge
from corral.core.records import Cause, Note, Submitted, Transition
from corral.core.states import TaskState
from corral.errors import UserError
from corral.spec.model import Slurm, Task
from corral.supervisor.backend import Backend

if TYPE_CHECKING:
    from corral.supervisor.engine import Engine

# Every Slurm state in the core's words (core/outcome.py decides what each means; the README's
# Slurm section shows both tables). Total over SlurmState: a test checks every member.
SEEN: dict[SlurmState, Seen] = {
    SlurmState.PENDING: Seen.QUEUED,
    SlurmState.CONFIGURING: Seen.QUEUED,
    SlurmState.REQUEUED: Seen.QUEUED,
    SlurmState.REQUEUE_HOLD: Seen.QUEUED,
    SlurmState.REQUEUE_FED: Seen.QUEUED,
    SlurmState.SPECIAL_EXIT: Seen.QUEUED,  # requeued and held by Slurm: not an end
    SlurmState.RESIZING: Seen.QUEUED,
    SlurmState.STOPPED: Seen.QUEUED,  # stopped by an admin: it may go on, nothing to decide
    SlurmState.UNKNOWN: Seen.QUEUED,  # a state this client does not know: wait, decide nothing
    SlurmState.RUNNING: Seen.RUNNING,
    SlurmState.COMPLETING: Seen.RUNNING,
    SlurmState.SUSPENDED: Seen.RUNNING,
    SlurmState.SIGNALING: Seen.RUNNING,
    SlurmState.STAGE_OUT: Seen.RUNNING,
    SlurmState.COMPLETED: Seen.COMPLETED,
    SlurmState.FAILED: Seen.FAILED,
    SlurmState.CANCELLED: Seen.CANCELLED,
    SlurmState.TIMEOUT: Seen.TIMEOUT,
    SlurmState.PREEMPTED: Seen.PREEMPTED,
    SlurmState.NODE_FAIL: Seen.NODE_FAIL,
    SlurmState.BOOT_FAIL: Seen.BOOT_FAIL,
    SlurmState.OUT_OF_MEMORY: Seen.OUT_OF_MEMORY,
    SlurmState.DEADLINE: Seen.DEADLINE,
    SlurmState.REVOKED: Seen.REVOKED,
}
VANISHED_GRACE = 30.0  # a submitted job missing from squeue this long is judged by its journal


@dataclass
class SlurmBackend(Backend):
    root: Path
    task_id: str
    slurm: Slurm
    job_limit: int = 0
    engine: Engine | None = None  # set when supervision starts; `check` works without it
    client: SlurmClient = field(default_factory=SlurmClient)
    next_poll: float = 0.0
    cancelled: set[int] = field(default_factory=set)
    submitted_at: dict[int, float] = field(default_factory=dict)
    batches: int = 0
    resolved: bool = False  # jobs without a recorded Slurm id were looked for (after recovery)
    unresolved: bool = False  # an sbatch timed out: its jobs must be looked for

    def job_name(self) -> str:
        return f"corral-{self.task_id}"

    def check(self, task: Task, where: str | None = None) -> None:
        """Before anything is recorded: is Slurm there, and would it accept this job?

        A problem is a UserError of one line (`FILE: slurm: ...`) with Slurm's own words.
        """
        prefix = f"{where}: slurm" if where else "slurm"
        req = self._request(task, "0", Path(os.devnull))
        try:
            self.client.command_path("sbatch")
            self.client.command_path("squeue")
            proc = self.client.sbatch_test_only(req)
        except SlurmError as exc:
            raise UserError(f"{prefix}: {one_line(str(exc))}") from None
        if proc.returncode != 0:
            text = one_line(proc.stderr or proc.stdout or f"exit status {proc.returncode}")
            raise UserError(f"{prefix}: sbatch refused the job: {text}")

    def _request(self, task: Task, array: str, out_dir: Path) -> SbatchRequest:
        opts = sbatch_options(task, self.slurm)
        limit = self.job_limit
        if limit > 0 and "%" not in array:
            array = f"{array}%{limit}"
        return SbatchRequest(
            script=node_script(self.root, self.task_id),
            job_name=self.job_name(),
            array=array,
            output=str(out_dir / "slurm-%A_%a.out"),
            chdir=str(self.root / self.task_id),
            requeue=False,
            **opts,
        )

    # -- submission ------------------------------------------------------------------------

    def _engine(self) -> Engine:
        assert self.engine is not None, "the backend is not attached to an engine"
        return self.engine

    def submit(self, jobs: list[int]) -> None:
        """Submit freshly admitted jobs: one array per group of identical sbatch options."""
        engine = self._engine()
        engine.crashpoint("submit")  # tests: die with jobs SUBMITTED in the journal, not in Slurm
        groups: dict[str, list[int]] = defaultdict(list)
        tasks: dict[int, Task] = {}
        for job in jobs:
            rt = engine.sup.jobs.get(job)
            if rt is None or rt.state is not TaskState.SUBMITTED:
                continue
            task = engine.sup.task_for(job)  # rendered (the fold keeps it unrendered)
            if task.sandbox is None:
                # the node runs the job where a local run would: ROOT/ID/jobs/JOB ({{job.dir}})
                # for a job of an ensemble, ROOT/ID/sandbox for a task
                where = engine.layout.job_dir(job, True) if engine.ensemble else engine.layout.sandbox
                task = msgspec.structs.replace(task, sandbox=str(where))
            tasks[job] = task
            path = job_task_file(self.root, self.task_id, job)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(msgspec.json.encode(task))
            key = msgspec.json.encode(sbatch_options(task, self.slurm)).decode()
            groups[key].append(job)
        out_dir = slurm_dir(self.root, self.task_id)
        for group in groups.values():
            group.sort()
            array = array_spec(group)
            now = time.time()
            try:
                slurm_id = self.client.sbatch(self._request(tasks[group[0]], array, out_dir))
            except SlurmTimeout:
                # the controller may have taken it: the next poll looks for it by name and
                # submits again only what Slurm does not know
                self.unresolved = True
                continue
            except SlurmError as exc:
                for job in group:
                    reason = f"sbatch: {one_line(str(exc))}"
                    engine.record(
                        Transition(job, TaskState.FAILED.value, now, reason, engine.sup.jobs[job].attempt)
                    )
                continue
            self.batches += 1
            ids = [f"{slurm_id}_{job}" for job in group]
            engine.record(Submitted(group, slurm_id, now, ids))
            for job in group:
                self.submitted_at[job] = now
                self.cancelled.discard(job)  # a new attempt: an earlier one's cancel is not its own
        if self.next_poll == 0.0:
            self.next_poll = time.time() + self.slurm.poll_interval

    def cancel(self, jobs: list[int]) -> None:
        """One scancel for all of `jobs` (already ended ones are no error)."""
        engine = self._engine()
        engine.crashpoint("cancel")  # tests: die with a cancel recorded, not carried out
        sup = engine.sup
        ids = [sup.submitted[j] for j in jobs if j in sup.submitted]
        self.cancelled.update(jobs)
        if ids:
            try:
                self.client.scancel(ids)
            except SlurmError as exc:  # the next polls show what is still running
                engine.record(Note(f"scancel: {one_line(str(exc))}", time.time()))
        self.next_poll = time.time()

    def reattach(self) -> int:
        """After a recovery: watch again the live jobs Slurm holds (those with a recorded
        Slurm id; the others are looked for by name at the first poll). Returns how many."""
        engine = self._engine()
        sup = engine.sup
        self.resolved = False
        if sup.abandoned:  # the watchdog's verdicts are durable; their scancel may not have run
            try:
                self.client.scancel(sorted(sup.abandoned))
            except SlurmError as exc:
                engine.record(Note(f"scancel: {one_line(str(exc))}", time.time()))
        return sum(1 for job in sup.live if job in sup.submitted)

    def close(self) -> None:
        """Nothing to release: every Slurm job of ours has ended with its job of the ensemble."""

    # -- polling ---------------------------------------------------------------------------

    def due(self) -> float | None:
        if not self._engine().sup.live:
            return None
        return self.next_poll or time.time()

    def poll(self, now: float) -> None:
        """One squeue for every live job; record what changed."""
        if now < self.next_poll:
            return
        self.next_poll = now + self.slurm.poll_interval
        sup = self._engine().sup
        live = sorted(sup.live)
        ids = {j: sup.submitted[j] for j in live if j in sup.submitted}
        if len(ids) < len(live) and (self.unresolved or not self.resolved):
            # submitted jobs without a recorded Slurm id (a crash between sbatch and its
            # record, or an sbatch that timed out): this poll's one squeue looks for them
            self._resolve([j for j in live if j not in ids], now)
            return
        if not ids:
            return
        bases = {i.split("_")[0] for i in ids.values()}
        try:
            infos = self.client.squeue(bases)
        except SlurmError:
            return  # try again next interval; nothing is decided on a failed poll
        for job, ident in ids.items():
            info = infos.get(ident)
            rt = sup.jobs.get(job)
            if rt is None or rt.terminal:
                continue
            self._update(job, info, now)
        if not sup.live:
            self.note_counts(now)

    def note_counts(self, now: float) -> None:
        """Record how many Slurm commands this supervisor issued (benchmarks read it)."""
        counts = " ".join(f"{k}={v}" for k, v in sorted(self.client.counts.items()))
        self._engine().record(Note(f"slurm commands: {counts}", now))

    def _update(self, job: int, info: SlurmJobInfo | None, now: float) -> None:
        """Observe one job (Slurm's state, its node journal), let the core judge, record."""
        engine = self._engine()
        sup = engine.sup
        rt = sup.jobs[job]
        seen = Seen.GONE if info is None else SEEN[info.state]
        node_state, node_exit = (None, None)
        if seen not in (Seen.RUNNING, Seen.QUEUED):
            node_state, node_exit = self._node_end(job)
        verdict = judge(
            Observation(
                seen,
                rt.state,
                node_state,
                node_exit,
                cancelled=job in self.cancelled or rt.kill_requested,  # rt: durable, survives recovery
                recent=now - self.submitted_at.get(job, 0.0) < VANISHED_GRACE,
                requeue=self.slurm.requeue,
                requeues=sup.requeues.get(job, 0),
                kill_requested=sup.kill_requested,
            )
        )
        if verdict is None:
            return
        state, reason, code = verdict.state.value, verdict.reason, verdict.exit_code
        engine.record(Transition(job, state, now, reason, rt.attempt, code))
        if verdict.requeue:
            engine.record(
                Transition(job, TaskState.PENDING.value, now, "requeue", rt.attempt + 1, cause=Cause.REQUEUE)
            )

    def _resolve(self, jobs: list[int], now: float) -> None:
        """Find `jobs` (SUBMITTED, no Slurm id in the journal) by job name: record the ids of
        those Slurm knows (or that left a journal on disk), submit only the others."""
        engine = self._engine()
        sup = engine.sup
        try:
            infos = self.client.squeue_named(self.job_name())
        except SlurmError:
            return  # try again next interval
        self.resolved, self.unresolved = True, False
        known = {ident.split("_")[0] for ident in sup.submitted.values()}
        wanted = set(jobs)
        found: dict[int, str] = {}
        for info in infos.values():
            base, index = info.array_job_id, info.array_task_id
            if base is None or index is None or base in known or index not in wanted:
                continue
            if index not in found or int(base) > int(found[index].split("_")[0]):
                found[index] = f"{base}_{index}"
        for job in jobs:
            if job in found:
                continue
            # gone from squeue already (MinJobAge): its node journal says it ran
            ran = [
                d.name
                for d in node_layout_root(self.root, self.task_id, job).glob("*_*")
                if d.name.split("_")[0].isdigit() and d.name.split("_")[0] not in known
            ]
            if ran:
                found[job] = max(ran, key=lambda n: int(n.split("_")[0]))
        by_array: dict[str, list[int]] = defaultdict(list)
        for job, ident in found.items():
            by_array[ident.split("_")[0]].append(job)
        for base, group in sorted(by_array.items()):
            group.sort()
            engine.record(Submitted(group, base, now, [found[j] for j in group]))
        engine.record(
            Note(
                f"slurm: {len(found)} submitted jobs found by name, {len(jobs) - len(found)} never submitted",
                now,
            )
        )
        missing = [j for j in jobs if j not in found]
        if sup.kill_requested:
            self.cancel(sorted(found))
            for job in missing:
                engine.record(
                    Transition(
                        job, TaskState.KILLED.value, now, "cancelled before submission", sup.jobs[job].attempt
                    )
                )
        elif missing:
            self.submit(missing)

    def _node_end(self, job: int) -> tuple[TaskState | None, int | None]:
        """The state the job's own journal reached on the node and its last exit code
        ((None, None): no journal yet, or unreadable)."""
        from corral.supervisor.layout import Layout
        from corral.supervisor.session import replay

        ident = self._engine().sup.submitted.get(job)
        if ident is None:
            return None, None
        layout = Layout(node_layout_root(self.root, self.task_id, job), ident)
        if not layout.journal.exists():
            return None, None
        try:
            sub, _ = replay(layout)
        except Exception:  # an unreadable node journal: Slurm's view decides
            return None, None
        return sub.state, sub.summary(0).exit_code
