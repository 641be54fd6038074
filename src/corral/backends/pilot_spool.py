"""A pilot worker's streamed output (stream_logs): its runs' logs on node-local scratch, shipped
to the launcher as Output messages, and that scratch as the spool of what was not acknowledged.

- Runs write their stdout and stderr to files in a private scratch directory (`$TMPDIR`, else
  /tmp), not to the shared file system. `messages` reads what they added (supervisor/logship.py)
  and makes Output messages of it, in order, each numbered in the reports' sequence.
- Flow control, not buffering: at most `window` bytes are sent and not yet acknowledged; the
  rest waits in the files. A launcher that reads slowly (or a burst of output) makes the worker
  read its files later, never hold more in memory.
- The launcher acknowledges with the reports' Ack (cumulative: Ack N covers every message up
  to N, made durable first). A lost connection rewinds every log to what was acknowledged and
  ships it again on the next one (the launcher drops what it already has).
- The spool is bounded: when the bytes not acknowledged pass `limit`, the unsent tail of the
  biggest backlog is dropped and a marker line in the log says how many bytes (the next Output
  of that log carries the count, and the launcher notes it).
- A job's End waits until its runs' output was all sent (`holds`): the launcher receives a
  job's output before its end, and refuses output for a job it does not hold.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import msgspec

from corral.backends.pilot_wire import CHUNK, End, Output, ToLauncher, encode
from corral.core.records import RunUpdate
from corral.core.states import RUN_TERMINAL, RunState
from corral.journal.streamlog import Stream, StreamKey
from corral.spec.model import Task
from corral.supervisor.logship import LogShipper

log = logging.getLogger("corral.worker")

WINDOW = 4 * 1024 * 1024  # bytes of output sent and not yet acknowledged, at most
_ENDED = frozenset(s.value for s in RUN_TERMINAL)


def scratch_dir(task_id: str, worker: str) -> Path:
    """A new private directory on node-local scratch for this worker's run logs."""
    base = os.environ.get("TMPDIR") or "/tmp"
    return Path(tempfile.mkdtemp(prefix=f"corral-{task_id}-{worker}-", dir=base))


def streamed_task(task: Task) -> Task:
    """The task as a worker with stream_logs runs it: no log rotation (the copy-truncate would
    cut under the shipper's feet; the spool bound plays its part)."""
    processes = tuple(
        msgspec.structs.replace(p, logger=msgspec.structs.replace(p.logger, mode="standard"))
        if p.logger.mode == "rotate"
        else p
        for p in task.processes
    )
    return msgspec.structs.replace(task, processes=processes)


class OutputSpool:
    def __init__(self, directory: Path, limit: int, window: int = WINDOW) -> None:
        self.dir = directory
        self.limit = limit
        self.window = min(window, max(CHUNK, limit // 2))
        self.shipper = LogShipper(chunk=CHUNK)
        self.keys: dict[tuple[int, int], list[StreamKey]] = {}  # (job, attempt) -> its logs
        self.inflight: deque[tuple[int, StreamKey, int, int]] = deque()  # seq, key, end, length
        self.inflight_bytes = 0
        self.dropped = 0  # bytes dropped by the spool bound, in all
        self.seq = 0  # the Output messages' own numbering

    @property
    def logs_prefix(self) -> str:
        return os.path.join(str(self.dir), "")

    def seen(
        self, rec: RunUpdate, origin: tuple[int, int] | None, log_path: Callable[[int, str, int], str]
    ) -> None:
        """A run of the worker's engine changed state (ORIGIN: the launcher's job and attempt;
        LOG_PATH: where a run of the engine logs, without the stream's suffix)."""
        if origin is None:
            return
        job, attempt = origin
        if rec.state == RunState.RUNNING.value:
            path = log_path(rec.job, rec.process, rec.run)
            for stream, suffix in ((Stream.STDOUT, ".stdout"), (Stream.STDERR, ".stderr")):
                key = StreamKey(job, attempt, rec.process, rec.run, stream)
                if key not in self.shipper.watched:
                    self.shipper.watch(key, Path(path + suffix))
                    self.keys.setdefault(origin, []).append(key)
        elif rec.state in _ENDED:
            for key in self.keys.get(origin, ()):
                if key.process == rec.process and key.run == rec.run:
                    self.shipper.ended(key)

    def job_ended(self, job: int, attempt: int) -> None:
        """Every run of the job has ended: its logs grow no more."""
        for key in self.keys.get((job, attempt), ()):
            self.shipper.ended(key)
        self._clean((job, attempt))

    def holds(self, job: int, attempt: int) -> bool:
        """Output of the job not sent yet: its End must wait."""
        return any(not self.shipper.complete(k) for k in self.keys.get((job, attempt), ()))

    def send(
        self, pending: list[ToLauncher], send: Callable[[bytes], bool], final: float | None = None
    ) -> None:
        """Send what is due now (`batch`; SEND: False once the connection is lost); FINAL: the
        worker leaves, so everything left, for at most that many seconds, a window's worth at
        a time (acks are not read any more)."""
        deadline = time.monotonic() + (final or 0.0)
        while True:
            data = self.batch(pending, WINDOW if final is not None else None)
            if not data or not send(data) or final is None or time.monotonic() > deadline:
                return

    def batch(self, pending: list[ToLauncher], budget: int | None = None) -> bytes:
        """What to send now: Output of what the runs wrote since (within the window, or BUDGET
        bytes more), then the PENDING reports in order up to the first End whose job still has
        output to send (those taken are removed from PENDING)."""
        data = [encode(m) for m in self.messages(budget)]
        taken = 0
        for message in pending:
            if isinstance(message, End) and self.holds(message.job, message.attempt):
                break
            data.append(encode(message))
            taken += 1
        del pending[:taken]
        return b"".join(data)

    def messages(self, budget: int | None = None) -> list[Output]:
        """Output messages of what the runs wrote since, within the window (or BUDGET)."""
        if budget is None:
            budget = self.window - self.inflight_bytes
        if budget <= 0:
            return []
        out = []
        for chunk in self.shipper.collect(budget):
            self.seq += 1
            seq = self.seq
            key = chunk.key
            out.append(
                Output(
                    seq=seq,
                    job=key.job,
                    attempt=key.attempt,
                    process=key.process,
                    run=key.run,
                    stream="stderr" if key.stream is Stream.STDERR else "stdout",
                    offset=chunk.offset,
                    data=chunk.data,
                    dropped=chunk.dropped,
                )
            )
            self.inflight.append((seq, key, chunk.offset + len(chunk.data), len(chunk.data)))
            self.inflight_bytes += len(chunk.data)
        return out

    def acked(self, seq: int) -> None:
        """The launcher has every message up to SEQ durably."""
        touched = set()
        while self.inflight and self.inflight[0][0] <= seq:
            _, key, end, length = self.inflight.popleft()
            self.inflight_bytes -= length
            self.shipper.acked(key, end)
            touched.add((key.job, key.attempt))
        for origin in touched:
            self._clean(origin)

    def rewind(self) -> None:
        """The connection is lost: what was not acknowledged goes again on the next one."""
        self.inflight.clear()
        self.inflight_bytes = 0
        self.shipper.rewind_all()

    def trim(self) -> int:
        """Keep the spool within its limit; the bytes dropped now."""
        dropped = self.shipper.trim(self.limit)
        self.dropped += dropped
        return dropped

    def _clean(self, origin: tuple[int, int]) -> None:
        """Logs of an ended job that the launcher has whole: their files go."""
        keys = self.keys.get(origin)
        if keys is None:
            return
        for key in [k for k in keys if self.shipper.done(k)]:
            self.shipper.forget(key, remove=True)
            keys.remove(key)
        if not keys:
            del self.keys[origin]

    def close(self) -> int:
        """The worker leaves: its scratch goes if nothing in it waits for the launcher; else it
        stays, and the bytes the launcher never acknowledged are logged (and returned)."""
        lost = self.shipper.backlog()
        if lost == 0:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            log.warning("worker: %d bytes of output never reached the launcher: left in %s", lost, self.dir)
        if self.dropped:
            log.warning("worker: %d bytes of output dropped (the spool was full)", self.dropped)
        return lost
