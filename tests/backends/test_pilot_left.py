"""backends/pilot_slurm.py `left_every`: how often the launcher asks Slurm for its workers'
time left (30 s; CORRAL_PILOT_LEFT_EVERY, internal, for tests), and bad values refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.backends.pilot_slurm import LEFT_EVERY, left_every
from corral.errors import UserError


def test_the_default_and_a_value_set_for_tests() -> None:
    assert left_every({}) == LEFT_EVERY == 30.0
    assert left_every({"CORRAL_PILOT_LEFT_EVERY": ""}) == LEFT_EVERY
    assert left_every({"CORRAL_PILOT_LEFT_EVERY": "1"}) == 1.0
    assert left_every({"CORRAL_PILOT_LEFT_EVERY": "0.5"}) == 0.5


@pytest.mark.parametrize("text", ["x", "0", "-1", "nan", "inf", "1e9", "0.01", "\x00\xff", "1" * 500])
def test_a_bad_value_is_one_line_naming_the_variable(text: str) -> None:
    with pytest.raises(UserError) as caught:
        left_every({"CORRAL_PILOT_LEFT_EVERY": text})
    message = str(caught.value)
    assert message.startswith("CORRAL_PILOT_LEFT_EVERY=") and "\n" not in message
    assert len(message) < 200


@given(st.text(max_size=50))
def test_any_text_is_a_value_in_range_or_refused(text: str) -> None:
    try:
        value = left_every({"CORRAL_PILOT_LEFT_EVERY": text})
    except UserError:
        return
    assert 0.1 <= value <= 1e6
