"""Ids that are not one safe path component are refused by every command, the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

import corral as api
from corral.supervisor.layout import InvalidId, check_id, valid_id

BAD_IDS = ["../escape", "/abs/path", "", "ok\n", "-x", ".hidden", "a/b", "a b", "x" * 129, "é"]


def _one_line_refusal(result, bad: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "starting with a letter or a digit" in result.stderr


@pytest.mark.parametrize("bad", BAD_IDS)
def test_simplerun_refuses_a_bad_id_and_writes_nothing(corral, tmp_path: Path, bad: str) -> None:
    before = sorted(p for p in tmp_path.rglob("*"))
    result = corral("simplerun", "--id", bad, "--", "true")
    _one_line_refusal(result, bad)
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert not Path("/abs/path").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["status", "--json"],
        ["read"],
        ["tail"],
        ["kill"],
        ["lose"],
        ["pause"],
        ["resume"],
        ["recover"],
    ],
)
def test_every_command_refuses_a_traversing_id(corral, command: list[str]) -> None:
    args = [*command[:1], "../escape", *command[1:]]
    result = corral(*args)
    if command[0] == "status":  # status takes a pattern: a bad one simply matches nothing
        assert result.returncode == 0 and "Traceback" not in result.stderr
        return
    _one_line_refusal(result, "../escape")


@pytest.mark.parametrize("bad", ["../escape", ""])
@pytest.mark.parametrize("command", [["submit", "--jsonl", "-"], ["wait", "0"], ["heartbeat", "--job", "0"]])
def test_job_commands_refuse_a_bad_ensemble_id(corral, command: list[str], bad: str) -> None:
    # an explicit --ensemble '' is a bad id, not "no ensemble named"
    result = corral(*command[:1], "--ensemble", bad, *command[1:])
    _one_line_refusal(result, bad)


def test_run_refuses_an_empty_id_instead_of_making_one_up(corral, spec_file) -> None:
    spec = spec_file("name: t\nprocesses:\n  - name: p\n    cmd: 'true'\n")
    result = corral("run", str(spec), "--id", "")
    _one_line_refusal(result, "")
    assert list(corral.root.iterdir()) == []


def test_python_api_uses_the_same_check(tmp_path: Path) -> None:
    task = api.Task(name="t", processes=[api.Process(name="p", cmd="true")])
    with pytest.raises(InvalidId, match="starting with a letter or a digit"):
        api.run(task, root=tmp_path, id="../escape")
    assert list(tmp_path.iterdir()) == []


def test_the_validator_accepts_ordinary_ids() -> None:
    for good in ["a", "run-20260101-1", "A.b_c@d+e", "9" * 128]:
        assert valid_id(good) and check_id(good) == good
    for bad in BAD_IDS:
        assert not valid_id(bad)


def test_a_parameter_inside_double_quotes_never_runs(corral, spec_file, tmp_path: Path) -> None:
    """examples/sweep.yaml writes `echo "alpha={{params.alpha}}"`: the value stays a value."""
    spec = spec_file(
        f'name: q\nprocesses:\n  - name: p\n    cmd: cd {tmp_path} && echo "x={{{{params.x}}}}"\n'
    )
    corral("run", str(spec), "--id", "q", "--set", "x=$(touch P)`touch Q`", check=True)
    assert not (tmp_path / "P").exists() and not (tmp_path / "Q").exists()
    assert (corral.root / "q" / "logs" / "p.0.stdout").read_text() == "x=$(touch P)`touch Q`\n"


def test_a_placeholder_in_backquotes_is_refused_in_one_line(corral, spec_file) -> None:
    spec = spec_file("name: q\nprocesses:\n  - name: p\n    cmd: echo `echo {{params.x}}`\n")
    result = corral("run", str(spec), "--id", "q", "--set", "x=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "processes[0].cmd" in result.stderr and "backquote" in result.stderr
    assert not (corral.root / "q").exists()
