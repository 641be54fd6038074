"""`Supervision.halted` is an enum (`Halted`): decisions compare members, the text is display.
Journals and checkpoints written when it was a plain string read back to the same members."""

from __future__ import annotations

import msgspec
import pytest

from corral.core.checkpoint import capture, decode_checkpoint, encode_checkpoint, restore
from corral.core.records import Action, Opened, Request, Transition, decode, encode
from corral.core.states import Halted
from corral.core.supervision import Policy, Supervision
from corral.spec.model import Process, Task

ONE = Task(name="t", processes=(Process(name="p", cmd="true"),))


def _ensemble(total: int = 3) -> Supervision:
    sup = Supervision("ensemble", "e", lambda _j: ONE, total, Policy(job_limit=1))
    sup.apply(Opened("ensemble", "e", {}, 0.0, "host", "boot"))
    return sup


@pytest.mark.parametrize(
    ("action", "halted"),
    [
        (Action.KILL, Halted.KILLED),
        (Action.LOSE, Halted.LOST),
        (Action.DRAIN, Halted.DRAINED),
        (Action.HALT, Halted.POLICY),
    ],
)
def test_each_request_halts_with_its_member_and_the_first_reason_is_kept(
    action: Action, halted: Halted
) -> None:
    sup = _ensemble()
    assert sup.halted is Halted.NONE
    # a request as an old journal holds it (plain text) folds to the same member
    sup.apply(decode(encode(Request(action.value, 1.0))))  # type: ignore[arg-type]
    assert sup.halted is halted
    sup.apply(Request(Action.DRAIN if action is not Action.DRAIN else Action.HALT, 2.0))
    assert sup.halted is halted  # the first reason stays


def test_a_halted_ensemble_admits_nothing_and_ends_with_the_text_as_reason() -> None:
    sup = _ensemble()
    sup.apply(Request(Action.DRAIN, 1.0))
    made = []
    for _ in range(10):
        records = sup.decide(1.0).records
        made += records
        for rec in records:
            sup.apply(rec)
    assert sup.next_new == 0  # no job was started
    end = made[-1]
    assert sup.terminal and isinstance(end, Transition) and end.reason == "drained", made


def test_reopen_and_retry_failed_clear_it() -> None:
    for clear in (Action.REOPEN, Action.RETRY_FAILED):
        sup = _ensemble()
        sup.apply(Request(Action.HALT, 1.0))
        sup.apply(Request(clear, 2.0))
        assert sup.halted is Halted.NONE


def test_a_checkpoint_holds_the_text_and_restores_the_member() -> None:
    sup = _ensemble()
    sup.apply(Request(Action.HALT, 1.0))
    data = encode_checkpoint(capture(sup, 2, 1.0))
    assert b"halt policy" in data  # the same bytes as when `halted` was a string
    fresh = _ensemble()
    restore(fresh, decode_checkpoint(data))
    assert fresh.halted is Halted.POLICY


def test_a_checkpoint_with_an_unknown_halt_text_is_refused() -> None:
    # refused, so that `restored` replays the journal instead of trusting it
    sup = _ensemble()
    sup.apply(Request(Action.HALT, 1.0))
    data = encode_checkpoint(capture(sup, 2, 1.0)).replace(b"halt policy", b"halt pol1cy")
    with pytest.raises(msgspec.ValidationError):
        decode_checkpoint(data)
