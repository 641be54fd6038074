"""`corral tail` reads a job's output from the pilot workers' streamed-output files when the job
has no log file of its own (issue 14). The launcher's side that writes these files is not wired
yet: the test writes them with the same writer the launcher will use, into a real ensemble."""

from __future__ import annotations

import shutil
from pathlib import Path

from corral.journal.streamlog import Stream, StreamKey, StreamLogWriter, index_path
from corral.supervisor.streamed import output_base

SPEC = """
name: streamed
job:
  cmd: "true"
params:
  i: {range: [0, 3]}
"""


def finished_without_logs(corral, spec_file) -> Path:  # type: ignore[no-untyped-def]
    corral("run", str(spec_file(SPEC)), "--id", "st", "-q", check=True)
    task_dir = corral.root / "st"
    shutil.rmtree(task_dir / "logs")  # streamed jobs leave no log file per run
    return task_dir


def test_tail_reads_the_newest_attempt_from_the_workers_files(corral, spec_file) -> None:  # type: ignore[no-untyped-def]
    task_dir = finished_without_logs(corral, spec_file)
    older = output_base(task_dir, "101_0")
    older.parent.mkdir(parents=True)
    with StreamLogWriter(older) as w:
        w.append(StreamKey(1, 0, "main", 0, Stream.STDOUT), b"attempt 0 (its worker was lost)\n")
    newer = output_base(task_dir, "102_0")
    newer.parent.mkdir(parents=True)
    with StreamLogWriter(newer) as w:
        w.append(StreamKey(1, 1, "main", 0, Stream.STDOUT), b"line 1\n")
        w.append(StreamKey(1, 1, "main", 0, Stream.STDERR), b"a warning\n")
        w.append(StreamKey(2, 0, "main", 0, Stream.STDOUT), b"job 2\n")
        w.flush()
        w.append(StreamKey(1, 1, "main", 0, Stream.STDOUT), b"line 2\n")
    out = corral("tail", "st", "1", check=True)
    assert out.stdout == "line 1\nline 2\n"
    assert corral("tail", "st", "1", "--stderr", check=True).stdout == "a warning\n"
    assert corral("tail", "st", "1", "-n", "1", check=True).stdout == "line 2\n"
    assert corral("tail", "st", "1", "main", check=True).stdout == "line 1\nline 2\n"
    assert corral("tail", "st", "2", check=True).stdout == "job 2\n"
    missing = corral("tail", "st", "0")
    assert missing.returncode == 2 and missing.stderr.strip() == "corral: st: job 0 has no logs"


def test_tail_of_a_damaged_or_garbage_output_file_is_one_line_not_a_traceback(corral, spec_file) -> None:  # type: ignore[no-untyped-def]
    task_dir = finished_without_logs(corral, spec_file)
    damaged = output_base(task_dir, "201_0")
    damaged.parent.mkdir(parents=True)
    with StreamLogWriter(damaged) as w:
        w.append(StreamKey(1, 0, "main", 0, Stream.STDOUT), b"before the damage\n")
        w.flush()
        w.append(StreamKey(1, 0, "main", 0, Stream.STDOUT), b"after\n")
    raw = bytearray(index_path(damaged).read_bytes())
    raw[-3] ^= 0xFF  # the last record's process name
    index_path(damaged).write_bytes(bytes(raw))
    garbage = output_base(task_dir, "202_0")
    garbage.parent.mkdir(parents=True)
    index_path(garbage).write_bytes(b"\x00garbage, not an index" * 10)
    assert corral("tail", "st", "1", check=True).stdout == "before the damage\n"
    nothing = corral("tail", "st", "2")
    assert nothing.returncode == 2 and "Traceback" not in nothing.stderr
    assert nothing.stderr.strip() == "corral: st: job 2 has no logs"
