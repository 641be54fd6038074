"""The launcher's end of streamed output (stream_logs): each worker's Output messages go into ONE
file pair for that worker, ROOT/ID/pilot/WORKER/output.data and .index (journal/streamlog.py),
read by `corral tail` and the observer's log API.

The backend checks that the worker holds the job at that attempt before anything is written
here; a chunk that would leave a gap is refused (`append_at`), one already there is dropped (a
resend after a reconnect). `flush` after each read (the bytes are in the files before the
journal records the job's end), `sync` before the Ack that lets the worker forget them.
Memory: the writer buffers at most FLUSH_BYTES, and a worker sends at most its window before
an Ack, so nothing here grows with the output; one that ignores its window is read a few MiB
per wake-up (Peer.receive), each read written before the next (tests/slurm/test_pilot_flood.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from corral.backends.pilot_wire import Output
from corral.journal.streamlog import Stream, StreamKey, StreamLogError, StreamLogWriter
from corral.supervisor.streamed import output_base

log = logging.getLogger("corral.supervisor")


@dataclass
class OutputSink:
    task_dir: Path
    writers: dict[str, StreamLogWriter] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # worker -> why its output is not kept
    refused: dict[str, int] = field(default_factory=dict)  # worker -> messages refused
    unsynced: set[str] = field(default_factory=set)  # workers with output written since a sync

    def writer(self, worker: str) -> StreamLogWriter | None:
        found = self.writers.get(worker)
        if found is not None or worker in self.broken:
            return found
        base = output_base(self.task_dir, worker)
        try:
            base.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            found = self.writers[worker] = StreamLogWriter(base)
        except (OSError, StreamLogError) as exc:
            self.broken[worker] = str(exc)
            log.warning("pilot: the output of worker %s is not kept: %s", worker, exc)
        return found

    def take(self, worker: str, message: Output) -> bool:
        """Append the chunk; False when it is refused (a gap, or no file to keep it in)."""
        writer = self.writer(worker)
        if writer is None:
            return False
        stream = Stream.STDERR if message.stream == "stderr" else Stream.STDOUT
        key = StreamKey(message.job, message.attempt, message.process, message.run, stream)
        try:
            writer.append_at(key, message.offset, message.data)
        except ValueError as exc:
            self.refuse(worker, f"job {message.job}: {exc}")
            return False
        self.unsynced.add(worker)
        return True

    def refuse(self, worker: str, why: str) -> None:
        """A message not taken; the first of each connection is logged."""
        count = self.refused[worker] = self.refused.get(worker, 0) + 1
        if count == 1:
            log.warning("pilot: output from worker %s refused: %s", worker, why)

    def flush(self, worker: str, sync: bool = False) -> None:
        writer = self.writers.get(worker)
        if writer is None or (sync and worker not in self.unsynced):
            return
        try:
            writer.flush(sync=sync)
            if sync:
                self.unsynced.discard(worker)
        except OSError as exc:  # a full disk: the output is lost, the ensemble goes on
            self.close(worker)
            self.broken[worker] = str(exc)
            log.warning("pilot: the output of worker %s is not kept: %s", worker, exc)

    def close(self, worker: str) -> None:
        self.refused.pop(worker, None)
        self.unsynced.discard(worker)
        writer = self.writers.pop(worker, None)
        if writer is not None:
            try:
                writer.close()
            except OSError as exc:
                log.warning("pilot: the output of worker %s: %s", worker, exc)

    def close_all(self) -> None:
        for worker in list(self.writers):
            self.close(worker)
