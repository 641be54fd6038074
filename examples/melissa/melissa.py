"""The server and the clients of examples/melissa.yaml (standard library only).

server: listens on TCP, publishes its address in its job directory (ROOT/ID/jobs/0/server.addr),
asks the launcher for MELISSA_CLIENTS clients once (`corral submit`), records every report in
reports.txt (fsync'd: a restarted server knows who reported), heartbeats every second
(`corral heartbeat`) and ends when every client reported. MELISSA_HANG_AFTER=K: the first
attempt stops heartbeating after K reports (to show the launcher restarting it).
client: computes, then sends its result to the server's current address until it is acknowledged
(a restarted server has a new address), heartbeating while it waits.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(os.environ["CORRAL_ROOT"])
TASK = os.environ["CORRAL_TASK_ID"]
JOB = int(os.environ["CORRAL_JOB"])
SERVER_DIR = ROOT / TASK / "jobs" / "0"
print = functools.partial(print, flush=True)  # lines reach the log as they happen


def corral(*args: str) -> str:
    return subprocess.run(["corral", *args], check=True, capture_output=True, text=True).stdout


def heartbeat_forever(stop: threading.Event) -> None:
    while not stop.wait(1.0):
        subprocess.run(["corral", "heartbeat"], check=False, capture_output=True)


def serve() -> None:
    n = int(os.environ.get("MELISSA_CLIENTS", "4"))
    hang_after = int(os.environ.get("MELISSA_HANG_AFTER", "0"))
    print(f"server: control {os.environ['CORRAL_CONTROL'].split(':')[0]}://..., {n} clients")
    reports = SERVER_DIR / "reports.txt"
    lines = reports.read_text().splitlines() if reports.exists() else []
    reported = {int(line.split()[0]) for line in lines}
    listener = socket.create_server(("0.0.0.0", 0))
    address = f"{socket.gethostname()}:{listener.getsockname()[1]}"
    tmp = SERVER_DIR / "server.addr.tmp"
    tmp.write_text(address)
    tmp.replace(SERVER_DIR / "server.addr")
    stop = threading.Event()
    threading.Thread(target=heartbeat_forever, args=(stop,), daemon=True).start()
    asked = SERVER_DIR / "clients.txt"
    if not asked.exists():  # ask once, even across restarts
        rows = SERVER_DIR / "clients.jsonl"
        rows.write_text("".join(json.dumps({"role": "client"}) + "\n" for _ in range(n)))
        asked.write_text(corral("submit", "--jsonl", str(rows)))
    clients = {int(j) for j in asked.read_text().split()}
    print(f"server: listening on {address}; clients {sorted(clients)}; {len(reported)} reported before")
    with open(reports, "a") as log:
        while not clients <= reported:
            conn, _ = listener.accept()
            with conn:
                line = conn.makefile().readline().split()
                if len(line) == 2 and int(line[0]) in clients:
                    log.write(f"{line[0]} {line[1]}\n")
                    log.flush()
                    os.fsync(log.fileno())
                    reported.add(int(line[0]))
                    conn.sendall(b"ok\n")
                    print(f"server: client {line[0]} reported {line[1]}")
            if hang_after and len(reported) >= hang_after and not (SERVER_DIR / "hung-once").exists():
                (SERVER_DIR / "hung-once").touch()
                stop.set()  # no more heartbeats: the launcher will kill and restart this job
                print("server: hanging (no heartbeat)")
                time.sleep(3600)
    stop.set()
    print(f"server: all {len(clients)} clients reported")


def client() -> None:
    result = sum(i * i for i in range(JOB * 1000))
    stop = threading.Event()
    threading.Thread(target=heartbeat_forever, args=(stop,), daemon=True).start()
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            host, port = (SERVER_DIR / "server.addr").read_text().rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=5) as conn:
                conn.sendall(f"{JOB} {result}\n".encode())
                if conn.makefile().readline().strip() == "ok":
                    print(f"client {JOB}: reported {result} to {host}:{port}")
                    stop.set()
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.5)  # the server is (re)starting
    sys.exit(f"client {JOB}: no server answered")


if __name__ == "__main__":
    serve() if sys.argv[1] == "server" else client()
