"""A pilot worker's streamed output (backends/pilot_spool.py) against real files and a real
launcher-side writer (pilot_sink.py writes with StreamLogWriter.append_at): the window bounds
what is in flight whatever the runs write, a lost connection resends from what was acked, a
full spool drops the unsent tail with a counted marker, and a job's End waits for its output.
The wire between them is the real encoding (encode / decode_for_launcher), without a socket."""

from __future__ import annotations

import subprocess
from pathlib import Path

from corral.backends.pilot_spool import OutputSpool, streamed_task
from corral.backends.pilot_wire import CHUNK, End, Output, Start, decode_for_launcher
from corral.core.records import RunUpdate
from corral.journal.streamlog import Stream, StreamKey, StreamLogReader, StreamLogWriter
from corral.spec.model import Logger, Process, Rotate, Task

MB = 1 << 20


def started(spool: OutputSpool, tmp: Path, job: int = 5, attempt: int = 1, local: int = 0) -> Path:
    """A run of local job LOCAL (the launcher's JOB at ATTEMPT) started; its log path's base."""

    def log_path(j: int, process: str, run: int) -> str:
        return str(tmp / "scratch" / f"{j}.{process}.{run}")

    spool.seen(RunUpdate(local, "main", 0, "RUNNING", 1.0), (job, attempt), log_path)
    return Path(log_path(local, "main", 0))


def ended(spool: OutputSpool, job: int = 5, attempt: int = 1, local: int = 0) -> None:
    spool.seen(RunUpdate(local, "main", 0, "SUCCESS", 2.0), (job, attempt), lambda *a: "")
    spool.job_ended(job, attempt)


def deliver(data: bytes, writer: StreamLogWriter) -> list[Output]:
    """The launcher's side: decode each line and append it as the sink does."""
    got = []
    for line in data.splitlines():
        message = decode_for_launcher(line)
        if isinstance(message, Output):
            stream = Stream.STDERR if message.stream == "stderr" else Stream.STDOUT
            key = StreamKey(message.job, message.attempt, message.process, message.run, stream)
            writer.append_at(key, message.offset, message.data)
            got.append(message)
    writer.flush()
    return got


def make(tmp: Path, limit: int = 64 * MB, window: int = 4 * MB) -> OutputSpool:
    (tmp / "scratch").mkdir(exist_ok=True)
    return OutputSpool(tmp / "scratch", limit, window)


def test_a_burst_never_puts_more_than_the_window_in_flight(tmp_path: Path) -> None:
    spool = make(tmp_path, window=1 * MB)
    base = started(spool, tmp_path)
    # a real process writes 20 MB at once: the spool holds it in its file, not in memory
    with open(str(base) + ".stdout", "wb") as out:
        subprocess.run(["head", "-c", str(20 * MB), "/dev/urandom"], stdout=out, check=True)
    ended(spool)
    expected = Path(str(base) + ".stdout").read_bytes()
    pending: list = []
    writer = StreamLogWriter(tmp_path / "launcher")
    sent = spool.batch(pending)
    messages = deliver(sent, writer)
    assert sum(len(m.data) for m in messages) == 1 * MB  # the window, no more
    assert all(len(m.data) <= CHUNK for m in messages)
    assert spool.batch(pending) == b""  # nothing more until an ack
    while spool.holds(5, 1):
        spool.acked(spool.seq)
        deliver(spool.batch(pending), writer)
    spool.acked(spool.seq)
    writer.close()
    key = StreamKey(5, 1, "main", 0, Stream.STDOUT)
    assert StreamLogReader(tmp_path / "launcher").read(key) == expected
    assert not Path(str(base) + ".stdout").exists()  # acked whole: the spool let it go


def test_a_jobs_end_waits_for_its_output_and_its_files_go_once_acked(tmp_path: Path) -> None:
    spool = make(tmp_path, window=64 * 1024)
    base = started(spool, tmp_path)
    Path(str(base) + ".stdout").write_bytes(b"x" * 200_000)
    Path(str(base) + ".stderr").write_bytes(b"warn\n")
    ended(spool)
    end = End(seq=2, job=5, attempt=1, at=3.0, state="SUCCESS", exit_code=0)
    pending: list = [Start(seq=1, job=5, attempt=1, at=1.0), end]
    order = []
    while pending:
        for line in spool.batch(pending).splitlines():
            order.append(type(decode_for_launcher(line)).__name__)
        spool.acked(spool.seq)
    # the End only after every byte of the job's output (4 chunks of stdout, 1 of stderr)
    assert order[-1] == "End" and order.count("Output") == 5 and "Start" in order
    assert not Path(str(base) + ".stdout").exists() and not Path(str(base) + ".stderr").exists()
    spool.close()
    assert not (tmp_path / "scratch").exists()


def test_a_lost_connection_resends_from_what_was_acked(tmp_path: Path) -> None:
    spool = make(tmp_path, window=MB)
    base = started(spool, tmp_path)
    log = Path(str(base) + ".stdout")
    log.write_bytes(b"".join(b"%07d\n" % i for i in range(100_000)))  # 800 kB
    writer = StreamLogWriter(tmp_path / "launcher")
    first = spool.batch([])
    deliver(first[: len(first) // 2].rsplit(b"\n", 1)[0], writer)  # half arrived, then the cut
    spool.acked(2)  # the launcher had acked the first two chunks
    spool.rewind()
    with log.open("ab") as more:  # the run went on writing meanwhile
        more.write(b"after the cut\n")
    ended(spool)
    expected = log.read_bytes()
    while spool.holds(5, 1):
        deliver(spool.batch([]), writer)  # resent from the ack: what it has is dropped
        spool.acked(spool.seq)
    writer.close()
    key = StreamKey(5, 1, "main", 0, Stream.STDOUT)
    assert StreamLogReader(tmp_path / "launcher").read(key) == expected


def test_a_full_spool_drops_the_unsent_tail_with_a_counted_marker(tmp_path: Path) -> None:
    spool = make(tmp_path, limit=MB, window=256 * 1024)
    base = started(spool, tmp_path)
    log = Path(str(base) + ".stdout")
    with log.open("ab") as out:  # O_APPEND, as the reaper opens a run's log
        out.write(b"a" * 300_000)
        out.flush()
        sent = spool.batch([])  # 256 kB in flight, then the launcher goes quiet
        out.write(b"b" * 3 * MB)
        out.flush()
        assert spool.trim() == 300_000 - 256 * 1024 + 3 * MB
        out.write(b"c" * 10)  # the run's next write lands after the marker
    assert spool.dropped == 300_000 - 256 * 1024 + 3 * MB
    text = log.read_bytes()
    assert text.startswith(b"a" * 256 * 1024 + b"\n[corral: ") and text.endswith(b"full]\n" + b"c" * 10)
    assert len(text) < 300_000
    ended(spool)
    writer = StreamLogWriter(tmp_path / "launcher")
    deliver(sent, writer)
    spool.acked(spool.seq)
    messages = deliver(spool.batch([]), writer)
    assert messages[0].dropped == spool.dropped and messages[0].offset == 256 * 1024
    writer.close()
    key = StreamKey(5, 1, "main", 0, Stream.STDOUT)
    assert StreamLogReader(tmp_path / "launcher").read(key) == text


def test_streamed_runs_do_not_rotate() -> None:
    rotating = Process(name="main", cmd="true", logger=Logger(mode="rotate", rotate=Rotate(size=1000)))
    task = streamed_task(Task(name="t", processes=(rotating, Process(name="other", cmd="true"))))
    assert [p.logger.mode for p in task.processes] == ["standard", "standard"]


def test_a_worker_leaving_cut_off_says_how_many_bytes_never_arrived(tmp_path: Path) -> None:
    spool = make(tmp_path)
    base = started(spool, tmp_path)
    Path(str(base) + ".stdout").write_bytes(b"y" * 5000)
    ended(spool)
    spool.batch([])  # sent, never acknowledged: the launcher went away
    spool.rewind()
    assert spool.close() == 5000
    assert Path(str(base) + ".stdout").read_bytes() == b"y" * 5000  # kept on the node's scratch
