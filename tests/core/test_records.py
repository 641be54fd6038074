"""Records decide with enums; journals written before the enums decode to the same values."""

from __future__ import annotations

import msgspec
import pytest

from corral.core.records import (
    Action,
    Cause,
    JournalKind,
    Opened,
    Request,
    Signal,
    SignalCause,
    Transition,
    cause_of,
    decode,
    encode,
)


def test_old_plain_text_values_decode_to_the_enums() -> None:
    # what earlier versions wrote: the same bytes as the plain strings
    assert decode(encode(Request("kill", 1.0))) == Request(Action.KILL, 1.0)  # type: ignore[arg-type]
    old_signal = Signal(0, "a", 0, 15, 1.0, "timeout")  # type: ignore[arg-type]
    assert decode(encode(old_signal)).reason is SignalCause.TIMEOUT  # type: ignore[union-attr]
    assert encode(Request(Action.RETRY_FAILED, 1.0)) == encode(Request("retry-failed", 1.0))  # type: ignore[arg-type]


def test_the_journal_kind_is_written_as_the_text_earlier_versions_wrote() -> None:
    # Opened("task", "t", {}, 1.0, "h", "b") as encoded before JournalKind existed
    old_task = bytes.fromhex("99a46f70656ea47461736ba17480cb3ff0000000000000a168a1620180")
    assert encode(Opened(JournalKind.TASK, "t", {}, 1.0, "h", "b")) == old_task
    rec = decode(old_task)
    assert isinstance(rec, Opened) and rec.kind is JournalKind.TASK
    old_ensemble = msgspec.msgpack.encode(["open", "ensemble", "e", {}, 1.0, "h", "b", 1, {}])
    assert encode(Opened(JournalKind.ENSEMBLE, "e", {}, 1.0, "h", "b")) == old_ensemble
    with pytest.raises(msgspec.ValidationError):  # an unknown kind is refused, not guessed
        decode(msgspec.msgpack.encode(["open", "batch", "e", {}, 1.0, "h", "b", 1, {}]))


def test_a_transition_written_before_the_cause_field_reads_its_cause_from_the_reason() -> None:
    # an old Transition has 6 fields; msgspec fills the new one with its default
    old = msgspec.msgpack.encode(["task", 0, "PENDING", 1.0, "requeue", 1, None])
    rec = decode(old)
    assert isinstance(rec, Transition) and rec.cause is Cause.NONE
    assert cause_of(rec) is Cause.REQUEUE
    assert cause_of(Transition(0, "FAILED", 1.0, "failed")) is Cause.FAILED  # an old wind-down
    assert cause_of(Transition(0, "FAILED", 1.0, "slurm FAILED")) is Cause.NONE  # display only


def test_an_unknown_action_is_a_decode_error_not_a_silent_no_op() -> None:
    with pytest.raises(msgspec.ValidationError):
        decode(msgspec.msgpack.encode(["req", "explode", 1.0]))
