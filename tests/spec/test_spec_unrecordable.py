"""Specs whose values a journal cannot record, or that the parsers choke on: one SpecError
naming the field, never a traceback from the parser, the journal's encoder or len()."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.spec import ParamSpace
from corral.spec.errors import SpecError
from corral.spec.load import load_spec
from corral.spec.model import Ensemble


def _error(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        spec = load_spec(path)
        if isinstance(spec, Ensemble):  # the job count is known once the space is built
            ParamSpace.from_ensemble(spec, base_dir=str(tmp_path), file=str(path))
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
def test_a_deeply_nested_document_is_one_error_not_a_recursion_error(
    tmp_path: Path, name: str, text: str
) -> None:
    assert "nested too deeply" in _error(tmp_path, name, text)


BIG = 10**26


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (f'name: x\nprocesses: [{{name: a, cmd: "true", max_failures: {BIG}}}]', "processes[0].max_failures"),
        (
            'name: x\nresources: {memory: 99999999999999999999TB}\nprocesses: [{name: a, cmd: "true"}]',
            "resources.memory",
        ),
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
        (
            "s.json",
            '{"name": "x", "processes": [{"name": "a", "argv": ["echo", "\\ud800"]}]}',
            "processes[0].argv[1]",
        ),
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


@pytest.mark.parametrize(
    "params",
    [
        "{a: {range: [100000]}, b: {range: [100000]}}",  # 10^10: fits len(), not a job number
        "{a: {range: [10000000000]}, b: {range: [10000000000]}, c: {range: [10000000000]}}",  # 10^30
        f"{{a: {{range: [{-(2**63)}, {2**63 - 1}]}}}}",  # one range longer than len() can say
    ],
    ids=["1e10", "1e30", "2e64"],
)
def test_a_matrix_of_more_jobs_than_job_numbers_is_refused(tmp_path: Path, params: str) -> None:
    message = _error(tmp_path, "many.yaml", f'name: x\njob: {{cmd: "true"}}\nparams: {params}')
    assert ": params: makes " in message and "more than 2147483647" in message, message


def test_the_largest_matrix_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "max.yaml"
    path.write_text(f'name: x\njob: {{cmd: "true"}}\nparams: {{a: {{range: [{2**31 - 1}]}}}}')
    spec = load_spec(path)
    assert isinstance(spec, Ensemble)
    space = ParamSpace.from_ensemble(spec, file=str(path))
    assert len(space) == 2**31 - 1 and space[2**31 - 2] == {"a": 2**31 - 2}


def test_more_retries_than_attempts_can_count_is_refused(tmp_path: Path) -> None:
    message = _error(tmp_path, "r.yaml", 'name: x\njob: {cmd: "true"}\nretries: 70000')
    assert ": retries: must be <= 65000" in message, message
