"""Folding many records at once (a replay): `fold_batch(sup, records)` ends in the same state
as `sup.apply(rec)` for each record, but a job that starts and ends inside the batch the
common way never gets a runtime.

Most of a finished ensemble's journal is jobs that went PENDING -> ACTIVE, ran one process
once (LAUNCHING, RUNNING, SUCCESS) and ended SUCCESS. `Supervision.apply` builds a
`TaskRuntime` and a `Run` for each, checks every step against core/states.py and forgets
them at the end: most of a replay's time (bench/replay.py). Here such a job's records are
only held (a short list per job) while they follow that path; its end writes the job's row of
the table directly. Whatever leaves the path (another state, another process or run, a
signal, an exit code on the way, a request, the end of the batch) first hands the job's held
records to `sup.apply`, in order, and goes on there: the held records are exactly those the
path accepts, which the tables accept too, so a record the fold refuses is refused by
`sup.apply` itself, at the same record, with the same error.

What the shortcut writes at a job's end is what `Supervision.apply` leaves for it: state,
attempt and exit code in the table, counts, `next_new`, `run_totals`, the job in neither
`live` nor `dirty` nor `jobs`. The property test (tests/core/test_batch_fold.py) folds
random ensemble journals both ways and compares.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from corral.core.records import Cause, JobsAdded, JournalKind, Record, Request, RunUpdate, Signal, Transition
from corral.core.states import TaskState
from corral.core.supervision import Supervision

_ACTIVE = TaskState.ACTIVE.value
_SUCCESS = TaskState.SUCCESS.value
_PENDING_CODE = list(TaskState).index(TaskState.PENDING)
_SUCCESS_CODE = list(TaskState).index(TaskState.SUCCESS)
_HEARTBEAT = Cause.HEARTBEAT

# A held job's list: [its process's name, Transition ACTIVE, RunUpdate LAUNCHING, RUNNING,
# SUCCESS]; the RunUpdate a list of length n takes next is in state _NEXT_RUN[n]
_NEXT_RUN = (None, None, "LAUNCHING", "RUNNING", TaskState.SUCCESS.value)
_AT_END, _AT_DONE = 4, 5


class FoldFailed(Exception):
    """Record `index` of the batch could not be folded (`__cause__` says why)."""

    def __init__(self, index: int) -> None:
        super().__init__(f"record {index}")
        self.index = index


def fold_batch(
    sup: Supervision, records: Iterable[Record], added: Callable[[JobsAdded], object] | None = None
) -> None:
    """Apply every record to `sup`, in order; `added(rec)` first for each JobsAdded (the
    caller's parameter space grows before the table does). A record the fold refuses raises
    FoldFailed naming its index, from the fold's own error; an OSError (of `added`) passes."""
    if sup.kind != JournalKind.ENSEMBLE or sup.keep_finished:
        _plain(sup, records, added)
        return
    _Shortcut(sup, added).fold(records)


def _plain(sup: Supervision, records: Iterable[Record], added: Callable[[JobsAdded], object] | None) -> None:
    index = -1
    try:
        for index, rec in enumerate(records):  # noqa: B007 (index names the bad record)
            if added is not None and type(rec) is JobsAdded:
                added(rec)
            sup.apply(rec)
    except OSError:
        raise
    except Exception as exc:
        raise FoldFailed(index) from exc


class _Shortcut:
    """One batch's held jobs (job -> its list) and what their ends add up to."""

    def __init__(self, sup: Supervision, added: Callable[[JobsAdded], object] | None) -> None:
        self.sup = sup
        self.added = added
        self.held: dict[int, list[Any]] = {}
        self.shape: object = None  # the last task shape asked for, and its one process's name
        self.name: str | None = None

    def fold(self, records: Iterable[Record]) -> None:
        sup, held = self.sup, self.held
        get, apply, release, exit_codes = held.get, sup.apply, self.release, sup.exit_codes
        index = ended = 0
        rec: Any  # a Record; narrowed by `kind` below, which mypy does not follow
        try:
            for index, rec in enumerate(records):  # noqa: B007 (index names the bad record)
                kind = type(rec)
                if kind is RunUpdate:
                    job = rec.job
                    buf = get(job)
                    if buf is not None:
                        n = len(buf)
                        if (
                            n < _AT_DONE
                            and rec.state == _NEXT_RUN[n]
                            and rec.process == buf[0]
                            and (n == 2 or rec.run == buf[2].run)
                        ):
                            code = rec.exit_code
                            if code is None or n == _AT_END:
                                buf.append(rec)
                                if code is not None:
                                    exit_codes[job] = code  # as the fold does, at this record
                                continue
                        release(job)
                    apply(rec)
                elif kind is Transition:
                    job = rec.job
                    buf = get(job)
                    if buf is None:
                        if rec.state != _ACTIVE or not self.hold(rec):
                            apply(rec)
                    elif len(buf) == _AT_DONE and rec.state == _SUCCESS and _plain_end(rec):
                        del held[job]
                        self.ended(job, rec.attempt)
                        ended += 1
                    else:
                        release(job)
                        apply(rec)
                elif kind is Request:
                    self.release_all()  # a request may touch every live job
                    apply(rec)
                else:
                    if kind is Signal and rec.job in held:
                        release(rec.job)
                    elif kind is JobsAdded and self.added is not None:
                        self.added(rec)
                    apply(rec)
            self.release_all()  # the jobs still going at the end get their runtimes
        except OSError:
            raise
        except Exception as exc:
            raise FoldFailed(index) from exc
        finally:
            self.count(ended)

    def hold(self, rec: Transition) -> bool:
        """Whether a job's ACTIVE starts the shortcut: a job with no runtime, PENDING, with
        one process (the transition itself is plain)."""
        sup, job = self.sup, rec.job
        if job in sup.jobs or not 0 <= job < sup.total or sup.states[job] != _PENDING_CODE:
            return False
        if not _plain_end(rec) or job in sup.run_numbers:
            return False
        shape = sup.task_shape(job)
        if shape is not self.shape:
            processes = shape.processes
            self.shape, self.name = shape, processes[0].name if len(processes) == 1 else None
        if self.name is None:
            return False
        sup.attempts[job] = rec.attempt  # as the fold does at this record (its range too)
        self.held[job] = [self.name, rec]
        return True

    def ended(self, job: int, attempt: int) -> None:
        """A held job's SUCCESS: its row as the fold leaves it (its counts in `count`)."""
        sup = self.sup
        if job >= sup.next_new:
            sup.next_new = job + 1
        sup.states[job] = _SUCCESS_CODE
        sup.attempts[job] = attempt
        if sup.retry_due:
            sup.retry_due.pop(job, None)
        sup.live.discard(job)
        sup.dirty.discard(job)
        if sup.beats:
            sup.beats.pop(job, None)
        if sup.yielded:
            sup.yielded.discard(job)

    def count(self, ended: int) -> None:
        """`ended` jobs went PENDING -> SUCCESS, each with one run launched."""
        counts = self.sup.counts
        counts[TaskState.PENDING] -= ended
        counts[TaskState.SUCCESS] += ended
        self.sup.run_totals[0] += ended

    def release(self, job: int) -> None:
        """The job leaves the shortcut: its held records go to the fold, in order."""
        apply = self.sup.apply
        for rec in self.held.pop(job)[1:]:
            apply(rec)

    def release_all(self) -> None:
        for job in list(self.held):
            self.release(job)


def _plain_end(rec: Transition) -> bool:
    """A transition with nothing the shortcut would have to do: no exit code, no heartbeat."""
    return rec.exit_code is None and rec.cause is not _HEARTBEAT
