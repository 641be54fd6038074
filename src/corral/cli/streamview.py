"""`corral tail -f` of a pilot job with streamed output: its newest run's log in the worker's
output files (ROOT/ID/pilot/WORKER/output.*, journal/streamlog.py), printed as it grows."""

from __future__ import annotations

import sys
from pathlib import Path

from corral.journal.streamlog import Stream, StreamKey, StreamLogReader, data_path, index_path
from corral.journal.watch import FileWatch
from corral.supervisor.streamed import output_base

PREFIX = "pilot:"  # a job's Submitted id on a pilot worker: pilot:WORKER


class StreamedView:
    """One job's streamed log on one worker: what was printed, and where to read next."""

    def __init__(self, task_dir: Path, job: int, process: str | None, stream: str, lines: int) -> None:
        self.task_dir = task_dir
        self.job = job
        self.process = process
        self.stream = Stream.STDERR if stream == "stderr" else Stream.STDOUT
        self.lines = lines  # the first print only: its last N lines (0: all)
        self.worker: str | None = None
        self.reader: StreamLogReader | None = None
        self.watch: FileWatch | None = None
        self.key: StreamKey | None = None
        self.offset = 0

    def place(self, ident: str) -> None:
        """The job's worker, from its Submitted id; a new one is read from its start."""
        if not ident.startswith(PREFIX) or ident[len(PREFIX) :] == self.worker:
            return
        self.worker = ident[len(PREFIX) :]
        base = output_base(self.task_dir, self.worker)
        self.reader = StreamLogReader(base)
        names = (index_path(base).name, data_path(base).name)
        self.watch = FileWatch(base.parent, names) if base.parent.is_dir() else None
        self.key, self.offset = None, 0

    def show(self, attempt: int) -> None:
        """Print what the log of ATTEMPT's newest run gained since the last call (the rest of
        an older run first, when a process started again)."""
        reader = self.reader
        if reader is None:
            return
        reader.refresh()
        keys = [
            k
            for k in reader.logs()
            if k.job == self.job
            and k.attempt == attempt
            and k.stream == self.stream
            and self.process in (None, k.process)
        ]
        newest = max(keys, key=lambda k: (k.run, k.process)) if keys else None
        if newest is None:
            return
        if newest != self.key:
            if self.key is not None:
                self._print(reader.read(self.key, self.offset))
            self.key, self.offset = newest, 0
        data = reader.read(newest, self.offset)
        self.offset += len(data)
        if self.lines > 0:
            data = b"".join(data.splitlines(keepends=True)[-self.lines :])
            self.lines = 0
        self._print(data)

    @staticmethod
    def _print(data: bytes) -> None:
        if data:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
