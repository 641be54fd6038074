"""The worker's reading of the launcher's answer to its hello (backends/pilot_hello.py).

On a reconnect the launcher sends the answer and the jobs the worker lost with its old stream in
one write: the answer is the first line only, and what follows it is the stream's beginning.
"""

from __future__ import annotations

import socket
import threading

from corral.backends.pilot_hello import read_answer


def answered(*chunks: bytes) -> tuple[dict[str, object], bytes]:
    ours, theirs = socket.socketpair()
    with ours, theirs:

        def send() -> None:
            for chunk in chunks:
                theirs.sendall(chunk)
            theirs.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        try:
            return read_answer(ours)
        finally:
            sender.join(timeout=30)


def test_the_answer_alone():
    assert answered(b'{"ok":true}\n') == ({"ok": True}, b"")


def test_messages_in_the_same_write_as_the_answer_are_kept_for_the_stream():
    run = b'{"m":"run","job":3,"attempt":0}\n{"m":"ack","seq":2}\n{"m":"st'
    assert answered(b'{"ok":true}\n' + run) == ({"ok": True}, run)


def test_an_answer_split_across_reads():
    assert answered(b'{"ok":', b'true}\n{"m":"stop"}\n') == ({"ok": True}, b'{"m":"stop"}\n')


def test_a_refusal_and_garbage():
    assert answered(b'{"ok":false,"error":"no worker x here"}\n') == (
        {"ok": False, "error": "no worker x here"},
        b"",
    )
    assert answered(b"\xff\xfe garbage\n")[0] == {"ok": False, "error": "not an answer"}
    assert answered(b"[1, 2]\n")[0] == {"ok": False, "error": "not an answer"}
    assert answered(b"")[0] == {"ok": False, "error": "not an answer"}
