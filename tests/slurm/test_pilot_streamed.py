"""Pilot workers with `stream_logs` against the real local Slurm: job output goes over the
worker's connection into one file pair per worker (ROOT/ID/pilot/WORKER/output.*), `corral tail`
reads it exactly and `tail -f` follows it; a fake worker's output is refused without leaving a
trace. Scaffolding: conftest's pilot_id (cleanup of worker jobs), slurm_helpers.py."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import time

from slurm_helpers import (
    alive_workers,
    answer_line,
    control_endpoint,
    fake_hello,
    job_list,
    launched,
    pilot_spec,
    raw_records,
    sigkill_launcher,
    workers_view,
)

from corral.journal.streamlog import StreamLogReader
from corral.supervisor.streamed import output_base

BIG = b"".join(b"%d\n" % i for i in range(1, 400_001))  # `seq 1 400000`: 2.7 MB


def tail_bytes(corral, task_id: str, *args: str) -> bytes:  # type: ignore[no-untyped-def]
    result = subprocess.run(
        corral.argv("tail", task_id, *args), capture_output=True, timeout=120, env=corral.env
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def spec_text(name: str, cmd: str, jobs: int, extra: str = "") -> str:
    return pilot_spec(name, f'workers: 1, cpus: 2, time: "5:00", stream_logs: true{extra}', cmd, jobs)


def test_streamed_output_is_exact_and_leaves_no_log_file(corral, spec_file, pilot_id, slurm, tmp_path):
    task_id = pilot_id("ps")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    corral.env["TMPDIR"] = str(scratch)  # the worker's node-local spool (sbatch passes it on)
    cmd = """
i={{params.i}}
echo "job $i line 1"
echo "job $i warning" >&2
if [ $i -eq 1 ]; then seq 1 400000; fi
if [ $i -eq 2 ]; then printf 'bin\\000\\001\\377end'; fi
"""
    result = corral("run", str(spec_file(spec_text("ps", cmd, 6))), "--id", task_id, "-q", timeout=600)
    assert result.returncode == 0, result.stderr
    assert all(row["state"] == "SUCCESS" for row in job_list(corral, task_id))

    for job in range(6):
        expected = b"job %d line 1\n" % job
        expected += BIG if job == 1 else b"bin\x00\x01\xffend" if job == 2 else b""
        assert tail_bytes(corral, task_id, str(job)) == expected, job
        assert tail_bytes(corral, task_id, str(job), "--stderr") == b"job %d warning\n" % job
    assert tail_bytes(corral, task_id, "1", "-n", "2") == b"399999\n400000\n"

    task_dir = corral.root / task_id
    logs = [p for p in task_dir.rglob("*") if p.suffix in (".stdout", ".stderr")]
    assert logs == []  # no file per job on the shared file system
    workers = sorted(p.parent.name for p in (task_dir / "pilot").glob("*/output.index"))
    assert len(workers) == 1
    reader = StreamLogReader(output_base(task_dir, workers[0]))
    assert len(reader.logs()) == 12 and reader.damage is None  # 6 jobs x stdout, stderr
    notes = [r for r in raw_records(corral, task_id) if r["type"] == "Note" and "dropped" in r["text"]]
    assert notes == []
    # the worker's spool on node-local scratch is removed when it leaves
    corral.wait_for(lambda: not any(scratch.iterdir()), timeout=120, interval=0.5)
    assert alive_workers(slurm, task_id) == []


def read_some(pipe, timeout: float) -> bytes:  # type: ignore[no-untyped-def]
    """What the pipe has within TIMEOUT (b"" at its end)."""
    ready, _, _ = select.select([pipe], [], [], timeout)
    return pipe.read1(65536) if ready else b""


def test_tail_follow_prints_a_running_jobs_output_until_it_ends(corral, spec_file, pilot_id, gate):
    task_id = pilot_id("pf")
    g = gate()
    cmd = f"""
echo before
echo "to stderr" >&2
{g.cmd}
echo after
printf 'last, no newline'
"""
    with launched(corral, spec_file(spec_text("pf", cmd, 1)), task_id) as launcher:
        corral.wait_for(lambda: (corral.root / task_id / "control.tcp").exists(), timeout=120)
        follow = subprocess.Popen(
            corral.argv("tail", "-f", task_id, "0"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=corral.env,
        )
        try:
            seen = b""
            deadline = time.monotonic() + 300
            while b"before\n" not in seen:  # printed while the job runs (blocked on the gate)
                assert time.monotonic() < deadline, seen
                assert follow.poll() is None, follow.stderr.read() if follow.stderr else ""
                seen += read_some(follow.stdout, 1.0)
            g.release()
            rest, err = follow.communicate(timeout=120)
        finally:
            follow.kill()
        assert follow.returncode == 0, err
        assert seen + rest == b"before\nafter\nlast, no newline"
        _out, err = launcher.communicate(timeout=300)
    assert launcher.returncode == 0, err
    # an ended job: -f prints it whole and returns
    assert tail_bytes(corral, task_id, "-f", "0", "--stderr") == b"to stderr\n"


def fake_output(job: int, attempt: int, data: str) -> bytes:
    import base64

    message = {
        "m": "out",
        "seq": 1,
        "job": job,
        "attempt": attempt,
        "process": "main",
        "run": 0,
        "stream": "stdout",
        "offset": 0,
        "data": base64.b64encode(data.encode()).decode(),
    }
    return json.dumps(message).encode() + b"\n"


def until_closed(conn: socket.socket) -> bytes:
    """Everything the launcher sends until it closes the connection (30 s at most)."""
    conn.settimeout(30)
    got = b""
    try:
        while chunk := conn.recv(65536):
            got += chunk
    except ConnectionResetError:  # closed with our bytes unread
        pass
    return got


def test_a_fake_workers_output_is_refused(corral, spec_file, pilot_id, slurm, gate):
    task_id = pilot_id("ph")
    g = gate()
    cmd = f"""
echo "real {{{{params.i}}}}"
{g.cmd}
"""
    with launched(corral, spec_file(spec_text("ph", cmd, 1)), task_id) as launcher:
        task_dir = corral.root / task_id

        def running_worker() -> str | None:
            running = (w for w in workers_view(corral.root, task_id) if w["running"] > 0 and w["connected"])
            return next((w["worker"] for w in running), None)

        name = corral.wait_for(running_worker, timeout=300, interval=0.2)
        host, port, token = control_endpoint(task_dir)
        before = raw_records(corral, task_id)

        with socket.create_connection((host, port), timeout=30) as conn:
            conn.sendall(fake_hello("wrong", name))
            assert b"wrong or missing token" in until_closed(conn)
        with socket.create_connection((host, port), timeout=30) as conn:
            conn.sendall(fake_hello(token, name))  # the right token and a real worker's name
            assert answer_line(conn) == b'{"ok":true}\n'
            # output of a job that does not exist, and of job 0 at an attempt it is not at
            conn.sendall(fake_output(7, 0, "fake 7\n") + fake_output(0, 3, "fake attempt\n"))
            conn.shutdown(socket.SHUT_WR)  # the launcher reads them, then our end: it closes
            until_closed(conn)
        with socket.create_connection((host, port), timeout=30) as conn:
            # pipelined: the hello and a message in one send, without waiting for the answer (the
            # message is read with the hello, and must still be judged, not lost)
            conn.sendall(fake_hello(token, name) + fake_output(9, 0, "fake 9\n"))
            assert answer_line(conn) == b'{"ok":true}\n'
            conn.shutdown(socket.SHUT_WR)
            until_closed(conn)
        with socket.create_connection((host, port), timeout=30) as conn:
            conn.sendall(fake_hello(token, name))
            assert answer_line(conn) == b'{"ok":true}\n'
            conn.sendall(b'{"m":"out","seq":2,"job":0}\n')  # garbage: the stream is dropped
            until_closed(conn)
        # a frame past the limit, three times: the real worker, cut off by our hellos, reconnects
        # when it will, and its hello replaces our stream without a word (seen once under
        # stress-ng: the 2 MiB were still on their way); the limit must be logged at least once
        for _ in range(3):
            with socket.create_connection((host, port), timeout=30) as conn:
                conn.sendall(fake_hello(token, name))
                assert answer_line(conn) == b'{"ok":true}\n'
                try:
                    conn.sendall(b'{"m":"out","data":"' + b"A" * (2 << 20))
                except OSError:  # dropped before we finished sending it
                    pass
                until_closed(conn)

        g.release()  # the real worker reconnects, and its job ends
        _out, err = launcher.communicate(timeout=300)
    assert launcher.returncode == 0, err
    log = err + ((task_dir / "supervisor.log").read_text() if (task_dir / "supervisor.log").exists() else "")
    assert f"output from worker {name} refused: job 7 attempt 0 is not on it" in log, log
    assert f"output from worker {name} refused: job 9 attempt 0 is not on it" in log, log
    assert f"dropped worker {name}: Object missing required field" in log, log
    assert f"dropped worker {name}: a message of more than" in log, log
    assert tail_bytes(corral, task_id, "0") == b"real 0\n"
    for path in (task_dir / "pilot").glob("*/output.index"):
        reader = StreamLogReader(output_base(task_dir, path.parent.name))
        assert reader.damage is None
        assert {(k.job, k.attempt) for k in reader.logs()} <= {(0, 0)}
        assert all(b"fake" not in reader.read(k) for k in reader.logs())
    after = raw_records(corral, task_id)[len(before) :]
    assert not [r for r in after if "fake" in json.dumps(r) or r.get("job") in (7, 9)], after
    assert all(r["type"] not in ("CORRUPT", "TORN") for r in after)
    assert alive_workers(slurm, task_id) == []


def test_output_written_while_the_launcher_is_down_arrives_after_recover(corral, spec_file, pilot_id, gate):
    """SIGKILL the launcher while a job streams: what the job writes meanwhile waits in the
    worker's spool and reaches the recovered launcher, once, in order (no gap, no repeat)."""
    task_id = pilot_id("pr")
    g = gate()
    cmd = f"""
seq 1 100000
{g.cmd}
seq 100001 200000
"""
    spec = spec_file(spec_text("pr", cmd, 1, ", idle_timeout: 120"))
    with launched(corral, spec, task_id) as launcher:
        first = b"".join(b"%d\n" % i for i in range(1, 100_001))

        def streamed_first_part() -> bool:
            result = subprocess.run(corral.argv("tail", task_id, "0"), capture_output=True, env=corral.env)
            return result.returncode == 0 and result.stdout == first

        corral.wait_for(streamed_first_part, timeout=300, interval=0.5)
        sigkill_launcher(corral, task_id, launcher)
    g.release()  # the job writes the rest and ends while nobody listens
    result = corral("recover", task_id, timeout=300)
    assert result.returncode == 0, result.stderr
    jobs = job_list(corral, task_id)
    assert [(r["state"], r["attempts"]) for r in jobs] == [("SUCCESS", 1)]
    assert tail_bytes(corral, task_id, "0") == b"".join(b"%d\n" % i for i in range(1, 200_001))


def test_tail_finds_a_jobs_log_on_its_worker_without_stream_logs(corral, spec_file, pilot_id, tmp_path):
    """Without stream_logs a worker logs under its own job numbers (pilot/WORKER/logs/w.*):
    tail maps the ensemble's job back through the worker's ledger, latest attempt."""
    task_id = pilot_id("pn")
    flags = tmp_path / "flags"
    flags.mkdir()
    cmd = f"""
if [ -e {flags}/{{{{params.i}}}} ]; then echo "job {{{{params.i}}}} again"; else echo "job {{{{params.i}}}}"; fi
echo "err {{{{params.i}}}}" >&2
if [ {{{{params.i}}}} -eq 3 ] && [ ! -e {flags}/3 ]; then touch {flags}/3; exit 4; fi
"""
    top = "retries: 1\nretry_backoff: 0.1"
    spec = spec_file(pilot_spec("pn", 'workers: 1, cpus: 2, time: "5:00"', cmd, 5, top=top))
    result = corral("run", str(spec), "--id", task_id, "-q", timeout=600)
    assert result.returncode == 0, result.stderr
    for job in range(5):
        again = b" again" if job == 3 else b""  # job 3 failed once: its retry's log
        assert tail_bytes(corral, task_id, str(job)) == b"job %d%s\n" % (job, again)
        assert tail_bytes(corral, task_id, str(job), "--stderr") == b"err %d\n" % job
