"""Streamed output (stream_logs) against the real local Slurm: a worker that floods the
launcher with output, faster than it writes it and ignoring the window a real worker keeps,
does not make the launcher's memory grow with the output.

The worker is a fake (a socket speaking the pilot wire protocol with the task's token): a
real worker keeps its window of unacknowledged output (4 MiB) and so cannot flood; the point
is the launcher's own bound (it reads at most a few MiB per wake-up and writes them before
reading more: the rest waits in the kernel's socket buffers, TCP pushes back). Its worker job
is held in Slurm (`--hold`), so no real worker takes the name.
"""

from __future__ import annotations

import base64
import json
import socket
import threading

import psutil
from slurm_helpers import (
    answer_line,
    control_endpoint,
    fake_hello,
    held_workers,
    job_list,
    launched,
    pilot_spec,
)

from corral.journal import lock_holder

CHUNK = 64 * 1024
CHUNKS = 8192  # 512 MiB of output
GROWTH = 128 * 1024 * 1024  # generous: the launcher reads at most 8 MiB a wake-up


def output_line(seq: int, attempt: int, offset: int, data: str) -> bytes:
    head = f'{{"m":"out","seq":{seq},"job":0,"attempt":{attempt},"process":"main","run":0,'
    return (head + f'"stream":"stdout","offset":{offset},"data":"{data}"}}\n').encode()


def read_run(conn: socket.socket) -> dict:
    """The launcher's first Run message on this stream (the job it handed us)."""
    got = b""
    while True:
        for line in got.split(b"\n")[:-1]:
            message = json.loads(line)
            if message.get("m") == "run":
                return message
        chunk = conn.recv(65536)
        assert chunk, "the launcher closed the stream"
        got += chunk


def test_a_worker_flooding_output_does_not_grow_the_launchers_memory(corral, spec_file, pilot_id, slurm):
    task_id = pilot_id("po")
    pilot = 'workers: 1, max_workers: 1, cpus: 1, time: "10:00", idle_timeout: 300, silence: 600'
    spec = spec_file(pilot_spec("po", pilot + ", stream_logs: true", "true", 1, slurm='extra: ["--hold"]'))
    task_dir = corral.root / task_id
    with launched(corral, spec, task_id) as launcher:
        (array,) = corral.wait_for(lambda: held_workers(slurm, task_id), timeout=120, interval=0.2)
        name = f"{array}_0"
        pid = lock_holder(task_dir / "journal")
        assert pid is not None
        host, port, token = control_endpoint(task_dir)
        conn = socket.create_connection((host, port), timeout=60)
        with conn:
            conn.sendall(fake_hello(token, name))
            assert answer_line(conn) == b'{"ok":true}\n'
            attempt = read_run(conn)["attempt"]
            process = psutil.Process(pid)
            before = process.memory_info().rss

            data = base64.b64encode(b"x" * (CHUNK - 1) + b"\n").decode()
            sent = threading.Event()

            def flood() -> None:
                for i in range(CHUNKS):
                    conn.sendall(output_line(i + 1, attempt, i * CHUNK, data))
                sent.set()

            def drain() -> None:  # the launcher's acks: read and forgotten
                while conn.recv(65536):
                    pass

            for target in (flood, drain):
                threading.Thread(target=target, daemon=True).start()
            peak = before
            out = task_dir / "pilot" / name / "output.data"

            def written() -> bool:
                nonlocal peak
                peak = max(peak, process.memory_info().rss)
                return sent.is_set() and out.exists() and out.stat().st_size == CHUNKS * CHUNK

            corral.wait_for(written, timeout=600, interval=0.05)
            assert peak - before < GROWTH, (before, peak)
            end = {"m": "end", "seq": CHUNKS + 1, "job": 0, "attempt": attempt, "at": 1.0, "state": "SUCCESS"}
            conn.sendall(json.dumps(end).encode() + b"\n")
            _, err = launcher.communicate(timeout=300)
    assert launcher.returncode == 0, err
    assert [(r["job"], r["state"]) for r in job_list(corral, task_id)] == [(0, "SUCCESS")]
    tail = corral("tail", task_id, "0", "-n", "1", check=True).stdout
    assert tail == "x" * (CHUNK - 1) + "\n"
