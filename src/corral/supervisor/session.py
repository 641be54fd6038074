"""Opening a journal for supervision: a new task or ensemble, or the recovery of one.

`create()` writes the Opened record for a new task or ensemble; `take_over()` replays an
existing journal, re-attaches to the runs still alive, recovers the exit status of those that
ended meanwhile and marks LOST only what cannot be known. Both return an Engine ready to run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from corral import spec as specs  # templating and params load on first use (lazy)
from corral.core.batchfold import FoldFailed, fold_batch
from corral.core.records import Attached, JournalKind, Note, Opened, Record
from corral.core.supervision import Supervision
from corral.journal import (
    JournalLocked,
    JournalWriter,
    lock_holder,
    lock_taken,
    open_for_append,
    read_journal,
)
from corral.spec.errors import SpecError
from corral.spec.model import Ensemble, Task

if TYPE_CHECKING:
    from corral.supervisor.engine import Engine
from corral.supervisor import proc, safefs
from corral.supervisor.backend import BackendKind, BackendKinds, backend_name
from corral.supervisor.folding import Jobs, added_to, supervision_for
from corral.supervisor.layout import Layout
from corral.supervisor.replaying import decode_all, paused_gc, rejected


class SessionError(Exception):
    """A user-facing problem opening a task (exists already, not found, ...): one line."""


def _kind(opened: Opened, backends: BackendKinds | None) -> BackendKind | None:
    """The backend the journal's spec names (None: local, the engine's own)."""
    name = backend_name(opened)
    if name == "local":
        return None
    kind = (backends or {}).get(name)
    if kind is None:  # a caller that did not pass corral.backends.kinds.KINDS
        raise SessionError(f"{opened.id}: backend {name} is not available to this command")
    return kind


def _attach_backend(engine: Engine, opened: Opened, backends: BackendKinds | None, *, new: bool) -> None:
    kind = _kind(opened, backends)
    if kind is not None:
        engine.backend = kind.build(engine, opened, new=new)


def replay(layout: Layout, keep_finished: bool | None = None) -> tuple[Supervision, list[Record]]:
    """Fold a journal without taking its lock (readers: status, read, wait).

    Finished jobs keep their process detail for tasks; ensembles keep only counts and
    summaries unless asked (a 100,000-job ensemble would not fit otherwise).
    """
    with paused_gc():  # one pause for both: a collection between them would walk every record
        contents = read_journal(layout.journal)
        records = decode_all(layout, contents.payloads, contents.offsets)
        if not records or not isinstance(records[0], Opened):
            raise SessionError(f"{layout.journal}: no Opened record; not a corral journal")
        keep = records[0].kind == JournalKind.TASK if keep_finished is None else keep_finished
        sup, _jobs = _fold(layout, records, contents.payloads, contents.offsets, keep)
    return sup, records


def _fold(
    layout: Layout, records: list[Record], payloads: list[bytes], offsets: list[int] | None, keep: bool
) -> tuple[Supervision, Jobs | None]:
    """Fold every record; one that leads to an impossible state is RecordRejected (one line)."""
    assert isinstance(records[0], Opened)
    index = start = 0
    try:
        sup, jobs = supervision_for(records[0], layout, keep)
        index = 1  # a bad checkpoint at the head (compaction) is named by its first part
        start = absorb_head(sup, jobs, records)
        rest = islice(records, start, None) if start else records
        with paused_gc():
            fold_batch(sup, rest, added_to(jobs))  # the replay's hot loop (bench/replay.py)
    except OSError:
        raise  # the world, not the journal (a params file gone): its own message
    except FoldFailed as failed:
        assert isinstance(failed.__cause__, Exception)
        raise rejected(layout, payloads, offsets, start + failed.index, failed.__cause__) from None
    except Exception as exc:
        raise rejected(layout, payloads, offsets, index, exc) from None
    return sup, jobs


def absorb_head(sup: Supervision, jobs: Jobs | None, records: list[Record]) -> int:
    """The checkpoint a compaction wrote at the head, restored into `sup` (compaction.py)."""
    from corral.supervisor.compaction import absorb_head as absorb

    return absorb(sup, jobs, records)


def _attached(recovered: bool) -> Attached:
    return Attached(
        os.getpid(),
        proc.start_ticks(os.getpid()) or 0,
        time.time(),
        socket.gethostname(),
        proc.boot_id(),
        recovered,
    )


def create(
    layout: Layout,
    subject: Task | Ensemble,
    *,
    context: dict[str, Any],
    file: str | None = None,
    group: bool = False,
    backends: BackendKinds | None = None,
) -> Engine:
    """Start the journal of a new task (already rendered) or ensemble; `group` shares its
    directory with the owner's group (read only); `backends`: those the spec may name."""
    if layout.journal.exists() and has_records(layout):
        raise SessionError(_exists_message(layout))
    kind = JournalKind.TASK if isinstance(subject, Task) else JournalKind.ENSEMBLE
    context = dict(context)
    safefs.make_task_dir(layout.dir, group=group)
    safefs.make_subdir(layout.logs, layout.dir)  # a planted symlink is refused before any record
    mode = safefs.file_mode(layout.dir)
    if isinstance(subject, Ensemble) and subject.params_file:
        source = Path(subject.params_file)
        if not source.is_absolute() and file is not None:
            source = Path(file).resolve().parent / source
        copy = layout.dir / ("params" + source.suffix)
        safefs.write_file(copy, source.read_bytes(), mode)
        context["params_file"] = str(copy)
    opened = Opened(
        kind,
        layout.id,
        msgspec.to_builtins(subject),
        time.time(),
        socket.gethostname(),
        proc.boot_id(),
        context=context,
    )
    sup, jobs = supervision_for(opened, layout, keep_finished=kind == JournalKind.TASK)
    try:  # before anything is recorded: the backend must be there and accept this job
        backend = _kind(opened, backends)
        if backend is not None and sup.total:
            backend.check(layout, opened, sup, file)
    except BaseException:
        if not layout.journal.exists():
            shutil.rmtree(layout.dir, ignore_errors=True)  # leave no trace of a refused run
        raise
    writer = _new_journal(layout, mode)
    from corral.supervisor.engine import Engine  # readers (replay) never load the shell

    engine = Engine(layout, sup, writer, ensemble=kind == JournalKind.ENSEMBLE)
    _attach_backend(engine, opened, backends, new=True)
    if jobs is not None:
        engine.check_params = _param_checker(jobs)
        engine.params_added = jobs.space.add
    engine.record(opened)
    engine.record(_attached(False))
    writer.commit()
    return engine


def _new_journal(layout: Layout, mode: int) -> JournalWriter:
    try:
        writer, _ = open_for_append(layout.journal, create=True, mode=mode)
    except JournalLocked as exc:  # another `run` of this id took the lock after create's check
        if has_records(layout):
            raise SessionError(_exists_message(layout)) from None
        raise SessionError(  # not 'recover --force': that would kill the run starting it
            f"{layout.id}: a task with this id is being started by pid {exc.holder_pid}; choose another --id"
        ) from None
    return writer


def _param_checker(jobs: Jobs) -> Callable[[list[dict[str, Any]]], str | None]:
    def check(params: list[dict[str, Any]]) -> str | None:
        # render every submitted job now: a row that cannot render is refused before it is
        # recorded, instead of failing the supervisor when the job's turn comes
        if not params:
            return "submit needs at least one job"
        for i, row in enumerate(params):
            try:
                ctx = specs.TemplateContext(
                    jobs.layout.id,
                    jobs.ensemble.name,
                    str(jobs.layout.dir),
                    {},
                    dict(row),
                    specs.JobContext(index=-1, dir="", attempt=0),
                )
                specs.render_task(jobs.template, ctx)
            except SpecError as exc:
                return f"job {i + 1} of the submission: {exc}"
        return None

    return check


def has_records(layout: Layout) -> bool:
    """A journal cut off before its first record (killed while being created) holds nothing."""
    try:
        return bool(read_journal(layout.journal).payloads)
    except Exception:  # unreadable: it is something, and it is not ours to overwrite
        return True


def _exists_message(layout: Layout) -> str:
    try:
        sup, _ = replay(layout)
        state = sup.state.value
    except Exception:  # an unreadable journal still exists: say so, do not touch it
        state = "unreadable"
    if state in ("SUCCESS", "FAILED", "KILLED", "LOST"):
        return f"{layout.id}: a task with this id already ended ({state}); choose another --id"
    if _lock_held(layout):  # recover would take over (or --force kill) a healthy supervisor
        return (
            f"{layout.id}: a task with this id is {state}, supervised by pid "
            f"{lock_holder(layout.journal)}; choose another --id (or 'corral kill {layout.id}' first)"
        )
    return f"{layout.id}: a task with this id exists and is {state}; use 'corral recover {layout.id}'"


def _lock_held(layout: Layout) -> bool:
    """Whether a live writer holds the journal's lock (asked of the kernel, not the pid file)."""
    try:
        return bool(lock_taken(layout.journal))  # None: not ours to read, nobody we could tell of
    except OSError:
        return False


def stop_holder(layout: Layout, timeout: float = 10.0) -> int | None:
    """--force: SIGKILL the supervisor holding the lock (never ourselves), wait for the lock.

    SIGKILL, not TERM: a supervisor treats TERM as "kill my task gracefully", and a stuck one
    may not act at all. Its runs live in their own sessions and survive; we re-attach to them.
    """
    pid = lock_holder(layout.journal)
    if pid is None or pid == os.getpid() or not _is_corral(pid):
        return None
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.start_ticks(pid) is not None and not proc.is_zombie(pid):
        time.sleep(0.02)
    return pid


def take_over(
    layout: Layout, *, force: bool = False, backends: BackendKinds | None = None
) -> tuple[Engine, dict[str, int]]:
    """Recover: lock, replay, reconcile every live run with reality, return the engine."""
    if not layout.journal.exists():
        raise SessionError(f"{layout.id}: no such task under {layout.root}")
    safefs.check_dir(layout.dir)
    from corral.supervisor.checkpoints import restored

    # start from the checkpoint when there is one: only the records after it are read
    found = restored(layout, keep_finished=None)
    if found is not None and found[0].keep_finished != (found[0].kind == JournalKind.TASK):
        found = None  # kept with other detail than a supervisor keeps
    resume_at = found[2] if found is not None else 0
    writer, payloads = _open_writer(layout, resume_at, force=force)
    try:
        if found is not None and writer.read_from == resume_at:
            from corral.supervisor.checkpoints import fold_onto

            sup, jobs, _, _, before = found
            fold_onto(layout, sup, jobs, payloads, resume_at)
            writer.frames += before  # the writer counted only the frames it read
        else:
            sup, jobs = _fold_all(layout, payloads)
    except BaseException:
        writer.close()
        raise
    from corral.supervisor.engine import Engine

    engine = Engine(layout, sup, writer, ensemble=sup.kind == JournalKind.ENSEMBLE)
    assert sup.opened is not None
    _attach_backend(engine, sup.opened, backends, new=False)
    if jobs is not None:
        engine.check_params = _param_checker(jobs)
        engine.params_added = jobs.space.add
    if writer.repaired is not None:
        r = writer.repaired
        engine.record(
            Note(f"journal repaired: dropped {r.dropped} torn bytes at offset {r.offset}", time.time())
        )
    engine.record(_attached(True))
    counts = _reattach(engine)
    writer.commit()
    return engine, counts


def _open_writer(layout: Layout, resume_at: int, *, force: bool) -> tuple[JournalWriter, list[bytes]]:
    """Take the journal's lock; with `force`, from the supervisor holding it (stop_holder)."""
    try:
        return open_for_append(layout.journal, create=False, resume_at=resume_at)
    except JournalLocked:
        if not force:
            raise
    stop_holder(layout)
    # a killed process shows as a zombie while its other threads still exit, and its
    # lock goes with the last of them: give that a moment
    deadline = time.time() + 5.0
    while True:
        try:
            return open_for_append(layout.journal, create=False, resume_at=resume_at)
        except JournalLocked:
            if time.time() > deadline:
                raise
            time.sleep(0.02)


def _fold_all(layout: Layout, payloads: list[bytes]) -> tuple[Supervision, Jobs | None]:
    """The whole journal folded (no usable checkpoint), as a supervisor keeps it."""
    records = decode_all(layout, payloads, None)
    if not records:
        raise SessionError(f"{layout.id}: its journal has no records (killed while starting); run it again")
    if not isinstance(records[0], Opened):
        raise SessionError(f"{layout.journal}: no Opened record; not a corral journal")
    return _fold(layout, records, payloads, None, records[0].kind == JournalKind.TASK)


def _reattach(engine: Engine) -> dict[str, int]:
    """The backend's live runs or jobs re-attached, the others' ends recovered; noted."""
    attached = engine.backend.reattach()  # live runs (this host) or jobs (a batch system)
    recovered, lost = engine.backend.recovered()
    counts = {"attached": attached, "recovered": recovered, "lost": lost}
    engine.record(
        Note(
            "recovered: {attached} re-attached, {recovered} exit codes recovered, {lost} lost".format(
                **counts
            ),
            time.time(),
        )
    )
    return counts


def _is_corral(pid: int) -> bool:
    """The lock's pid names a corral supervisor (not a stranger that reused the pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"corral" in f.read()
    except OSError:
        return False
