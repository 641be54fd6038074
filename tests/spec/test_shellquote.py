"""A template value reaches /bin/sh as exactly its characters, in every quoting context."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.spec.errors import SpecError
from corral.spec.template import render_string

# printf %s prints its argument as it is; $(...) drops trailing newlines, so it gets its own
# check below
CONTEXTS = {
    "bare": "printf %s {{params.x}}",
    "glued": "printf %s pre{{params.x}}post",
    "double": 'printf %s "{{params.x}}"',
    "double, mixed": 'printf %s "a=${HOME_NOT_SET}{{params.x}}b"',
    "single": "printf %s '{{params.x}}'",
    "subst": 'printf %s "$(printf %s {{params.x}})."',
    "subst in double": 'printf %s "$(printf %s "{{params.x}}")."',
    "after a heredoc": "cat <<EOF\nbody\nEOF\nprintf %s {{params.x}}",
}
EXPECTED = {
    "glued": lambda v: f"pre{v}post",
    "double, mixed": lambda v: f"a={v}b",
    "subst": lambda v: v.rstrip("\n") + ".",
    "subst in double": lambda v: v.rstrip("\n") + ".",
    "after a heredoc": lambda v: "body\n" + v,
}
# what a shell can carry: no NUL, no lone surrogates; weighted towards the dangerous characters
VALUES = st.text(
    st.one_of(
        st.sampled_from(list("$`\"'\\\n\t ;&|()<>*?[]{}#~!=%-")),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    ),
    max_size=40,
)


def _sh(cmd: str, cwd: Path) -> str:
    done = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, cwd=cwd, timeout=30, check=False)
    assert done.returncode == 0, (cmd, done.stderr)
    return done.stdout.decode("utf-8", "surrogateescape")


@pytest.mark.parametrize("context", sorted(CONTEXTS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=VALUES)
def test_sh_receives_exactly_the_value(tmp_path: Path, context: str, value: str) -> None:
    cmd = render_string(CONTEXTS[context], {"params": {"x": value}}, True, "cmd")
    assert _sh(cmd, tmp_path) == EXPECTED.get(context, lambda v: v)(value)
    assert list(tmp_path.iterdir()) == []  # nothing ran that could create a file


@pytest.mark.parametrize("context", sorted(CONTEXTS))
def test_a_command_substitution_never_runs(tmp_path: Path, context: str) -> None:
    for attack in ["$(touch P)", "`touch P`", "'; touch P; '", '"; touch P; "', "\ntouch P\n"]:
        cmd = render_string(CONTEXTS[context], {"params": {"x": attack}}, True, "cmd")
        _sh(cmd, tmp_path)
        assert not (tmp_path / "P").exists(), (context, attack, cmd)


@pytest.mark.parametrize(
    ("template", "context", "hint"),
    [
        ("echo `echo {{params.x}}`", "backquote", "$(...)"),
        ("echo hi # {{params.x}}", "comment", "comment"),
        ("cat <<EOF\n{{params.x}}\nEOF", "here-document", "env:"),
        ("cat <<'EOF'\n{{params.x}}\nEOF", "here-document", "env:"),
    ],
)
def test_contexts_without_exact_quoting_are_refused(template: str, context: str, hint: str) -> None:
    with pytest.raises(SpecError) as err:
        render_string(template, {"params": {"x": "1"}}, True, "processes[0].cmd", "s.yaml")
    message = str(err.value)
    assert "s.yaml" in message and "processes[0].cmd" in message and context in message
    assert hint in message and "\n" not in message


def test_inside_arithmetic_only_a_number_passes(tmp_path: Path) -> None:
    assert (
        render_string("echo $(( {{params.x}} % 5 ))", {"params": {"x": 12}}, True, "cmd")
        == "echo $(( 12 % 5 ))"
    )
    for attack in ["a[$(touch P)]", "1 + $(touch P)", "x"]:
        with pytest.raises(SpecError, match="not a number"):
            render_string("echo $(( {{params.x}} ))", {"params": {"x": attack}}, True, "cmd")


def test_raw_still_opts_out_and_hash_inside_a_word_is_no_comment() -> None:
    assert render_string("echo {{params.x | raw}}", {"params": {"x": "a b"}}, True, "cmd") == "echo a b"
    assert render_string("echo a#{{params.x}}", {"params": {"x": "b c"}}, True, "cmd") == "echo a#'b c'"
