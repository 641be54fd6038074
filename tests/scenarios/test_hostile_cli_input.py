"""A hostile or careless user at the real CLI: specs and arguments corral cannot record, and
numbers far past what anyone means. Each is one line on stderr, exit status 2, no traceback,
and nothing under the root; or, for numbers that are legal, a supervisor that carries on."""

from __future__ import annotations

import pytest

ONE = 'name: one\nprocesses: [{name: a, cmd: "true"}]\n'
BIG = 10**26

BAD_SPECS = {
    "deep": ("name: x\nprocesses: " + "[" * 50_000 + "]" * 50_000, "nested too deeply"),
}


def _refused(result, needle: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
@pytest.mark.parametrize("command", ["run", "inspect"])
def test_a_spec_corral_cannot_record_is_one_line_and_nothing_is_made(corral, spec_file, case, command):
    text, needle = BAD_SPECS[case]
    spec = spec_file(text, name=f"{case}.yaml")
    _refused(corral(command, str(spec), "--id", "bad"), needle)
    assert f"{case}.yaml" in corral(command, str(spec), "--id", "bad").stderr
    assert not (corral.root / "bad").exists()
