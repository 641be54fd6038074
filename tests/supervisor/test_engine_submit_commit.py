"""engine.py: a backend whose `submit` only records (pilot workers: it sends after the commit)
is given the turn's admitted jobs before the commit, so admission and hand-over cost one
fdatasync; what it sends still goes out only once its records are durable. A backend that acts
in `submit` (sbatch) gets the jobs after the admission is durable, as before."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from corral.core.records import Opened, Submitted, Transition, decode
from corral.core.states import TaskState
from corral.core.supervision import Supervision
from corral.journal import read_journal
from corral.spec.load import load_spec
from corral.supervisor.backend import Backend
from corral.supervisor.engine import Engine
from corral.supervisor.layout import Layout
from corral.supervisor.session import create


@dataclass
class Handing(Backend):
    """Records each job handed over, 'sends' it after the commit, and ends it SUCCESS at the
    next poll; notes what was durable at each step."""

    stages: bool
    engine: Engine | None = None
    sent: list[int] = field(default_factory=list)
    pending_at_submit: list[int] = field(default_factory=list)  # records not yet durable then
    pending_at_send: list[int] = field(default_factory=list)
    syncs_at_send: list[int] = field(default_factory=list)

    @property
    def submits_in_commit(self) -> bool:
        return self.stages

    def submit(self, jobs: list[int]) -> None:
        engine = self.engine
        assert engine is not None
        self.pending_at_submit.append(engine.writer.pending)
        engine.record(Submitted(jobs, "fake", time.time(), [f"w:{j}" for j in jobs]))
        engine.after_commit(lambda: self._send(jobs))

    def _send(self, jobs: list[int]) -> None:
        assert self.engine is not None
        self.pending_at_send.append(self.engine.writer.pending)
        self.syncs_at_send.append(SYNCS[0])
        self.sent += jobs

    def due(self) -> float | None:
        return time.time() if self.sent else None

    def poll(self, now: float) -> None:
        engine = self.engine
        assert engine is not None
        for job in self.sent:
            rt = engine.sup.jobs[job]
            engine.record(Transition(job, TaskState.SUCCESS.value, now, "", rt.attempt, 0))
        self.sent = []

    def cancel(self, jobs: list[int]) -> None:
        return None

    def reattach(self) -> int:
        return 0


SYNCS = [0]


@dataclass
class Kind:
    backend: Handing

    def check(self, layout: Layout, opened: Opened, sup: Supervision, file: str | None) -> None:
        return None

    def build(self, engine: Engine, opened: Opened, *, new: bool) -> Backend:
        self.backend.engine = engine
        return self.backend


def run(tmp_path: Path, stages: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[Handing, list[Any]]:
    real = os.fdatasync

    def counted(fd: int) -> None:
        SYNCS[0] += 1
        real(fd)

    SYNCS[0] = 0
    monkeypatch.setattr(os, "fdatasync", counted)
    tmp_path.mkdir(exist_ok=True)
    spec = tmp_path / "e.yaml"
    spec.write_text(
        "name: e\nbackend: slurm\njob_limit: 3\njob:\n  cmd: 'true'\nparams:\n  i: {range: [0, 7]}\n"
    )
    backend = Handing(stages)
    layout = Layout(tmp_path / "root", "e")
    engine = create(layout, load_spec(spec), context={}, backends={"slurm": Kind(backend)})
    try:
        assert engine.run() is TaskState.SUCCESS
    finally:
        engine.writer.close()
    return backend, [decode(p) for p in read_journal(layout.journal).payloads]


def test_a_recording_submit_shares_the_admissions_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, recs = run(tmp_path, True, monkeypatch)
    assert all(n > 0 for n in backend.pending_at_submit)  # the admissions were not durable yet
    assert backend.pending_at_send and all(n == 0 for n in backend.pending_at_send)  # sent once durable
    handed = [j for r in recs if isinstance(r, Submitted) for j in r.jobs]
    assert sorted(handed) == list(range(7))
    # each hand-over rode the commit of its admission: one fdatasync per batch, not two
    assert backend.syncs_at_send == sorted(set(backend.syncs_at_send))
    staged_syncs = SYNCS[0]
    backend2, _ = run(tmp_path / "b", False, monkeypatch)
    assert all(n == 0 for n in backend2.pending_at_submit)  # sbatch-like: the admission durable first
    assert all(n == 0 for n in backend2.pending_at_send)
    assert staged_syncs < SYNCS[0], (staged_syncs, SYNCS[0])
