"""Where streamed output is kept: the pilot's one file pair per worker (issue 14).

A pilot launcher that streams its jobs' output writes it into ROOT/ID/pilot/WORKER/output.data
and .index (journal/streamlog.py), keyed by the launcher's job, attempt, process, run and
stream, instead of one log file per run. Readers (`corral tail`) look here when a job has no
log file of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

from corral.journal.streamlog import Stream, StreamKey, StreamLogReader, index_path

PILOT_DIR = "pilot"
OUTPUT = "output"


def output_base(task_dir: Path, worker: str) -> Path:
    """The file pair's base (without .data / .index) of WORKER."""
    return task_dir / PILOT_DIR / worker / OUTPUT


def streamed_log(
    task_dir: Path, job: int, process: str | None, stream: str
) -> tuple[StreamLogReader, StreamKey] | None:
    """The newest streamed log of JOB (of PROCESS, if given) on STREAM ("stdout"/"stderr")
    among the workers' files: the latest attempt, then the highest run, then the newest file."""
    which = Stream.STDERR if stream == "stderr" else Stream.STDOUT
    found: list[tuple[tuple[int, int, float], StreamLogReader, StreamKey]] = []
    try:
        workers = sorted(os.listdir(task_dir / PILOT_DIR))
    except OSError:  # no pilot here
        return None
    for worker in workers:
        base = output_base(task_dir, worker)
        try:
            mtime = index_path(base).stat().st_mtime
        except OSError:
            continue
        reader = StreamLogReader(base)
        key = reader.latest(job, process, which)
        if key is not None:
            found.append(((key.attempt, key.run, mtime), reader, key))
    if not found:
        return None
    _, reader, key = max(found, key=lambda f: f[0])
    return reader, key
