"""Specs whose values a journal cannot record, or that the parsers choke on: one SpecError
naming the field, never a traceback from the parser, the journal's encoder or len()."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.spec.errors import SpecError
from corral.spec.load import load_spec


def _error(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message


DEPTH = 100_000


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("deep.yaml", "name: x\nprocesses: " + "[" * DEPTH + "]" * DEPTH + "\n"),
        ("deep.json", '{"name": "x", "processes": ' + "[" * DEPTH + "]" * DEPTH + "}"),
        ("deep.toml", 'name = "x"\nprocesses = ' + "[" * DEPTH + "]" * DEPTH + "\n"),
    ],
    ids=["yaml", "json", "toml"],
)
def test_a_deeply_nested_document_is_one_error_not_a_recursion_error(tmp_path: Path, name: str, text: str) -> None:
    assert "nested too deeply" in _error(tmp_path, name, text)


BIG = 10**26


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (f'name: x\nprocesses: [{{name: a, cmd: "true", max_failures: {BIG}}}]', "processes[0].max_failures"),
        ('name: x\nresources: {memory: 99999999999999999999TB}\nprocesses: [{name: a, cmd: "true"}]', "resources.memory"),
        (f'name: x\njob: {{cmd: "echo {{{{params.a}}}}"}}\nparams: {{a: [1, {BIG}]}}', "params.a[1]"),
        (f'name: x\njob: {{cmd: "true"}}\nparams: {{a: {{range: [0, {BIG}]}}}}', "params.a.range[1]"),
        (f'name: x\njob: {{cmd: "true"}}\nretries: {2**64}', "retries"),
    ],
    ids=["max_failures", "memory", "param", "range", "retries"],
)
def test_an_integer_beyond_64_bits_names_its_field(tmp_path: Path, text: str, field: str) -> None:
    message = _error(tmp_path, "big.yaml", text)
    assert f": {field}: integer" in message and "does not fit in 64 bits" in message, message


@pytest.mark.parametrize(
    ("name", "text", "field"),
    [
        ("s.yaml", 'name: x\nprocesses: [{name: a, cmd: "echo \\udcff"}]', "processes[0].cmd"),
        ("s.json", '{"name": "x", "processes": [{"name": "a", "argv": ["echo", "\\ud800"]}]}', "processes[0].argv[1]"),
        ("k.yaml", 'name: x\nprocesses: [{name: a, cmd: "true", env: {"\\udcff": v}}]', "processes[0].env"),
        ("p.yaml", 'name: x\njob: {cmd: "true"}\nparams: {a: ["\\udcff"]}', "params.a[0]"),
    ],
    ids=["cmd", "argv", "env_key", "param"],
)
def test_text_that_is_not_utf8_names_its_field(tmp_path: Path, name: str, text: str, field: str) -> None:
    message = _error(tmp_path, name, text)
    assert f": {field}: " in message and "not valid UTF-8" in message, message


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('name: x\nprocesses: [{name: a, cmd: "echo a\\0b"}]', "processes[0].cmd"),
        ('name: x\nprocesses: [{name: a, argv: [echo, "a\\0b"]}]', "processes[0].argv[1]"),
        ('name: x\nsandbox: "/tmp/a\\0b"\nprocesses: [{name: a, cmd: "true"}]', "sandbox"),
        ('name: x\njob: {processes: [{name: a, cmd: "true\\0"}]}', "job.processes[0].cmd"),
        ('name: x\njob: {argv: [echo, "\\0"]}', "job.argv[1]"),
    ],
    ids=["cmd", "argv", "sandbox", "job_process", "job_argv"],
)
def test_a_nul_in_a_command_is_refused_at_load(tmp_path: Path, text: str, field: str) -> None:
    """It failed every run at exec ('embedded null byte') instead of the spec at load."""
    message = _error(tmp_path, "nul.yaml", text)
    assert f": {field}: contains NUL" in message, message
