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

import math
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from corral.backends.slurm_client import (
    SbatchRequest,
    SlurmClient,
    SlurmError,
    SlurmJobInfo,
    SlurmState,
)
from corral.core.records import Submitted, Transition
from corral.core.states import TASK_TERMINAL, TaskState
from corral.spec.model import Slurm, Task

if TYPE_CHECKING:
    from corral.supervisor.engine import Engine

REQUEUE_STATES = {SlurmState.PREEMPTED, SlurmState.NODE_FAIL, SlurmState.BOOT_FAIL, SlurmState.TIMEOUT}
RUNNING_STATES = {SlurmState.RUNNING, SlurmState.COMPLETING, SlurmState.SUSPENDED, SlurmState.SIGNALING,
                  SlurmState.STAGE_OUT}
# what Slurm's own end state means when the node's journal has no end to report
SLURM_END = {
    SlurmState.COMPLETED: (TaskState.LOST, "slurm COMPLETED but the job's journal has no end"),
    SlurmState.FAILED: (TaskState.FAILED, "slurm FAILED"),
    SlurmState.CANCELLED: (TaskState.KILLED, "slurm CANCELLED"),
    SlurmState.TIMEOUT: (TaskState.FAILED, "slurm TIMEOUT"),
    SlurmState.PREEMPTED: (TaskState.LOST, "slurm PREEMPTED"),
    SlurmState.NODE_FAIL: (TaskState.LOST, "slurm NODE_FAIL"),
    SlurmState.BOOT_FAIL: (TaskState.LOST, "slurm BOOT_FAIL"),
    SlurmState.OUT_OF_MEMORY: (TaskState.FAILED, "slurm OUT_OF_MEMORY"),
    SlurmState.DEADLINE: (TaskState.FAILED, "slurm DEADLINE"),
}
MAX_REQUEUES = 5  # requeues after preemption / walltime, beyond the retries
VANISHED_GRACE = 30.0  # a submitted job missing from squeue this long is judged by its journal


def slurm_dir(root: Path, task_id: str) -> Path:
    return root / task_id / "slurm"


def job_task_file(root: Path, task_id: str, job: int) -> Path:
    return slurm_dir(root, task_id) / str(job) / "task.json"


def node_layout_root(root: Path, task_id: str, job: int) -> Path:
    """Root of the node-side task journals of one job: one task id per Slurm job id."""
    return slurm_dir(root, task_id) / str(job)


def sbatch_options(task: Task, slurm: Slurm) -> dict[str, Any]:
    """A task's resources and the spec's slurm block as sbatch options (block wins)."""
    res = task.resources
    gres = slurm.gres or (f"gpu:{res.gpus}" if res.gpus else None)
    return {
        "partition": slurm.partition,
        "account": slurm.account,
        "qos": slurm.qos,
        "time_limit_seconds": slurm.time or res.walltime,
        "cpus_per_task": slurm.cpus_per_task or (math.ceil(res.cpus) if res.cpus else None),
        "memory_bytes": slurm.memory or (res.memory or None),
        "gres": gres,
        "extra_args": tuple(slurm.extra),
    }


def node_script(root: Path, task_id: str) -> str:
    python = sys.executable
    return (
        "#!/bin/sh\n"
        "# corral: supervise one job's task on this node (job = array task index)\n"
        f'exec "{python}" -m corral --root "{root}" slurm-job "{task_id}" "$SLURM_ARRAY_TASK_ID"\n'
    )


@dataclass
class SlurmBackend:
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

    def job_name(self) -> str:
        return f"corral-{self.task_id}"

    def check(self, task: Task) -> None:
        """Before anything is recorded: is Slurm there, and would it accept this job?"""
        req = self._request(task, "0", Path(os.devnull))
        self.client.command_path("sbatch")
        self.client.command_path("squeue")
        proc = self.client._run("sbatch", ["--test-only", *self.client.sbatch_argv(req)], input=req.script)
        if proc.returncode != 0:
            raise SlurmError(f"sbatch refused the job: {(proc.stderr or proc.stdout).strip()}")

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
        groups: dict[str, list[int]] = defaultdict(list)
        tasks: dict[int, Task] = {}
        for job in jobs:
            rt = engine.sup.jobs.get(job)
            if rt is None or rt.state is not TaskState.SUBMITTED:
                continue
            task = rt.spec
            if task.sandbox is None and engine.ensemble:
                # the node runs the job where a local run would: ROOT/ID/jobs/JOB ({{job.dir}})
                task = msgspec.structs.replace(task, sandbox=str(engine.layout.job_dir(job, True)))
            tasks[job] = task
            path = job_task_file(self.root, self.task_id, job)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(msgspec.json.encode(task))
            key = msgspec.json.encode(sbatch_options(task, self.slurm)).decode()
            groups[key].append(job)
        out_dir = slurm_dir(self.root, self.task_id)
        for group in groups.values():
            group.sort()
            array = _array_spec(group)
            now = time.time()
            try:
                slurm_id = self.client.sbatch(self._request(tasks[group[0]], array, out_dir))
            except SlurmError as exc:
                for job in group:
                    engine.record(Transition(job, TaskState.FAILED.value, now, f"sbatch: {exc}",
                                             engine.sup.jobs[job].attempt))
                continue
            self.batches += 1
            ids = [f"{slurm_id}_{job}" for job in group]
            engine.record(Submitted(group, slurm_id, now, ids))
            for job in group:
                self.submitted_at[job] = now
        if self.next_poll == 0.0:
            self.next_poll = time.time() + self.slurm.poll_interval

    def cancel(self, jobs: list[int]) -> None:
        sup = self._engine().sup
        ids = [sup.submitted[j] for j in jobs if j in sup.submitted]
        self.cancelled.update(jobs)
        if ids:
            self.client.scancel(ids)
        self.next_poll = time.time()

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

    def _update(self, job: int, info: SlurmJobInfo | None, now: float) -> None:
        engine = self._engine()
        sup = engine.sup
        rt = sup.jobs[job]
        if info is not None and info.state in RUNNING_STATES:
            if rt.state is TaskState.SUBMITTED:
                engine.record(Transition(job, TaskState.ACTIVE.value, now, "", rt.attempt))
            return
        if info is not None and not info.terminal:
            return  # PENDING, CONFIGURING, REQUEUED...: still waiting
        if info is None and job not in self.cancelled and now - self.submitted_at.get(job, 0.0) < VANISHED_GRACE:
            node = self._node_state(job)
            if node is None or node not in TASK_TERMINAL:
                return
        node_state = self._node_state(job)
        slurm_state = info.state if info is not None else None
        if slurm_state in REQUEUE_STATES or node_state not in TASK_TERMINAL:
            # the node could not finish its journal: Slurm's word decides
            if slurm_state is None:
                state, reason = (
                    (TaskState.KILLED, "cancelled") if job in self.cancelled
                    else (TaskState.LOST, "gone from Slurm without an end in its journal")
                )
            else:
                state, reason = SLURM_END.get(slurm_state, (TaskState.LOST, f"slurm {slurm_state.value}"))
                if job in self.cancelled and state is not TaskState.FAILED:
                    state, reason = TaskState.KILLED, "cancelled"
        else:
            assert node_state is not None
            state, reason = node_state, f"slurm {slurm_state.value}" if slurm_state else ""
        engine.record(Transition(job, state.value, now, reason, rt.attempt))
        if (
            self.slurm.requeue
            and slurm_state in REQUEUE_STATES
            and not sup.kill_requested
            and rt.attempt < sup.policy.retries + MAX_REQUEUES
        ):
            engine.record(Transition(job, TaskState.PENDING.value, now, "requeue", rt.attempt + 1))

    def _node_state(self, job: int) -> TaskState | None:
        """The end the job's own journal reached on the node (None: no journal yet)."""
        from corral.supervisor.layout import Layout
        from corral.supervisor.session import replay

        ident = self._engine().sup.submitted.get(job)
        if ident is None:
            return None
        layout = Layout(node_layout_root(self.root, self.task_id, job), ident)
        if not layout.journal.exists():
            return None
        try:
            sub, _ = replay(layout)
        except Exception:  # an unreadable node journal: Slurm's view decides
            return None
        return sub.state


def _array_spec(jobs: list[int]) -> str:
    """[1,2,3,7,9,10] -> '1-3,7,9-10'."""
    parts = []
    start = prev = jobs[0]
    for job in jobs[1:]:
        if job == prev + 1:
            prev = job
            continue
        parts.append(f"{start}-{prev}" if prev > start else str(start))
        start = prev = job
    parts.append(f"{start}-{prev}" if prev > start else str(start))
    return ",".join(parts)
