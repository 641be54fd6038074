"""backends/pilot_wire.py: the pilot stream's messages decode into typed structs, or not at all."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.backends.pilot_wire import (
    CHUNK,
    MAX_LINE,
    Ack,
    End,
    Lines,
    Output,
    Run,
    Start,
    WireError,
    decode_for_launcher,
    decode_for_worker,
    encode,
    task_of,
)
from corral.spec.model import Process, Task


def test_messages_round_trip() -> None:
    for message in (
        Start(seq=1, job=2, attempt=0, at=3.0),
        End(seq=2, job=2, attempt=0, at=4.0, state="FAILED", exit_code=3),
    ):
        assert decode_for_launcher(encode(message).strip()) == message
    task = Task(name="j", processes=(Process(name="main", cmd="true"),))
    import msgspec

    run = Run(job=5, attempt=1, task=msgspec.to_builtins(task))
    decoded = decode_for_worker(encode(run).strip())
    assert isinstance(decoded, Run) and task_of(decoded) == task


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"{",
        b"[]",
        b'{"m":"start"}',
        b'{"m":"start","seq":1,"job":-1,"attempt":0,"at":1}',
        b'{"m":"start","seq":1,"job":1,"attempt":70000,"at":1}',
        b'{"m":"end","seq":1,"job":1,"attempt":0,"at":1,"state":"LOST"}',
        b'{"m":"end","seq":1,"job":1,"attempt":0,"at":1,"state":"SUCCESS","extra":1}',
        b'{"m":"run","job":1,"attempt":0,"task":{}}',  # a launcher message, not a report
        b'{"m":"nope"}',
        b"\xff\xfe",
        b"[" * 100_000,
    ],
)
def test_garbage_is_a_wire_error(line: bytes) -> None:
    with pytest.raises(WireError):
        decode_for_launcher(line)


def test_a_run_whose_task_is_not_a_task_is_refused() -> None:
    run = decode_for_worker(b'{"m":"run","job":1,"attempt":0,"task":{"name":3}}')
    assert isinstance(run, Run)
    with pytest.raises(WireError, match=r"run.task"):
        task_of(run)


@given(st.binary(max_size=2000))
def test_any_bytes_decode_or_raise_wire_error(data: bytes) -> None:
    for decode in (decode_for_launcher, decode_for_worker):
        try:
            decode(data)
        except WireError:
            pass


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_lines_split_any_chunking_the_same(chunks: list[bytes]) -> None:
    whole = b"".join(chunks)
    reader = Lines()
    got = [line for chunk in chunks for line in reader.feed(chunk)]
    assert got == [line for line in whole.split(b"\n")[:-1] if line.strip()]


def test_an_endless_line_is_refused() -> None:
    reader = Lines()
    with pytest.raises(WireError):
        for _ in range(MAX_LINE // 65536 + 2):
            reader.feed(b"x" * 65536)


def output(**fields: object) -> bytes:
    base: dict[str, object] = {
        "m": "out",
        "seq": 1,
        "job": 2,
        "attempt": 0,
        "process": "main",
        "run": 0,
        "stream": "stdout",
        "offset": 0,
        "data": "AAEC",
    }
    return json.dumps({**base, **fields}).encode()


def test_output_carries_any_bytes_as_base64() -> None:
    data = bytes(range(256)) * 4  # binary, no trailing newline
    message = Output(
        seq=3, job=1, attempt=2, process="main", run=0, stream="stderr", offset=7, data=data, dropped=5
    )
    line = encode(message)
    assert line.count(b"\n") == 1 and b"\x00" not in line
    assert decode_for_launcher(line.strip()) == message
    assert decode_for_launcher(output()) == Output(
        seq=1, job=2, attempt=0, process="main", run=0, stream="stdout", offset=0, data=b"\x00\x01\x02"
    )
    ack = decode_for_worker(encode(Ack(seq=4, output=9)).strip())
    assert ack == Ack(seq=4, output=9)


@pytest.mark.parametrize(
    "fields",
    [
        {"data": "not base64!"},
        {"data": ""},  # an empty chunk says nothing
        {"data": base64.b64encode(b"x" * (CHUNK + 1)).decode()},  # too big for one message
        {"stream": "stdin"},
        {"process": ""},
        {"process": "a/b"},
        {"process": "x" * 256},
        {"offset": -1},
        {"run": 2**31},
        {"job": 2**31},
        {"dropped": -3},
        {"extra": 1},
    ],
)
def test_bad_output_is_a_wire_error(fields: dict[str, object]) -> None:
    with pytest.raises(WireError):
        decode_for_launcher(output(**fields))


def test_the_largest_output_fits_in_a_line() -> None:
    largest = Output(
        seq=2**62,
        job=2**31 - 1,
        attempt=65535,
        process="p" * 255,
        run=2**31 - 1,
        stream="stdout",
        offset=2**62,
        data=b"\xff" * CHUNK,
        dropped=2**62,
    )
    assert len(encode(largest)) < MAX_LINE


def test_withdraw_and_returned_round_trip_and_are_checked() -> None:
    from corral.backends.pilot_wire import Returned, Withdraw

    withdraw = Withdraw(job=3, attempt=1)
    assert decode_for_worker(encode(withdraw).strip()) == withdraw
    returned = Returned(seq=4, job=3, attempt=1, at=5.0)
    assert decode_for_launcher(encode(returned).strip()) == returned
    for bad in (
        b'{"m":"withdraw","job":-1,"attempt":0}',
        b'{"m":"withdraw","job":1}',
        b'{"m":"returned","seq":1,"job":1,"attempt":0,"at":1,"extra":1}',
        b'{"m":"returned","seq":1,"job":1,"attempt":70000,"at":1}',
    ):
        with pytest.raises(WireError):
            (decode_for_worker if b"withdraw" in bad else decode_for_launcher)(bad)
    with pytest.raises(WireError):  # each way its own messages only
        decode_for_launcher(encode(withdraw).strip())
