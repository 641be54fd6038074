"""Bad input: one clear line naming the file and field, exit status 2, nothing recorded."""

from __future__ import annotations

import pytest

BAD_SPECS = {
    "cycle": (
        """
name: c
processes:
  - {name: a, cmd: "true", after: [b]}
  - {name: b, cmd: "true", after: [a]}
""",
        "cycle",
    ),
    "unknown_after": (
        """
name: u
processes:
  - {name: setup, cmd: "true"}
  - {name: server, cmd: "true", after: [setpu]}
""",
        "processes[1].after",
    ),
    "duplicate": (
        """
name: d
processes:
  - {name: a, cmd: "true"}
  - {name: a, cmd: "true"}
""",
        "processes[1].name",
    ),
    "bad_type": (
        """
name: t
processes:
  - {name: a, cmd: "true", max_failures: lots}
""",
        "processes[0].max_failures",
    ),
    "unbound": (
        """
name: ub
processes:
  - {name: a, cmd: "echo {{ports.http}}"}
""",
        "ports.http",
    ),
    "unsafe_name": (
        """
name: un
processes:
  - {name: ../evil, cmd: "true"}
""",
        "processes[0].name",
    ),
    "unknown_field": (
        """
name: uf
processes:
  - {name: a, cmd: "true", retries: 3}
""",
        "retries",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_one_line_exit_2(corral, spec_file, case):
    text, needle = BAD_SPECS[case]
    spec = spec_file(text, name=f"{case}.yaml")
    result = corral("run", str(spec), "--id", "bad")
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{case}.yaml" in lines[0] and needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert not (corral.root / "bad").exists(), "nothing is recorded for a bad spec"


def test_inspect_reports_the_same_errors(corral, spec_file):
    spec = spec_file(BAD_SPECS["unknown_after"][0], name="u.yaml")
    result = corral("inspect", str(spec))
    assert result.returncode == 2
    assert "did you mean 'setup'" in result.stderr


def test_inspect_prints_interpolated_task(corral, spec_file):
    spec = spec_file("""
name: web
processes:
  - {name: server, cmd: "serve --port {{ports.http}} --id {{task.id}}"}
""")
    result = corral("inspect", str(spec), "-P", "http=8080", "--id", "web-1")
    assert result.returncode == 0, result.stderr
    assert "serve --port 8080 --id web-1" in result.stdout


def test_bad_spec_leaves_existing_task_untouched(corral, spec_file):
    good = spec_file(
        """
name: ok
processes:
  - {name: a, cmd: "true"}
""",
        name="good.yaml",
    )
    assert corral("run", str(good), "--id", "keep").returncode == 0
    journal = corral.root / "keep" / "journal"
    before = journal.read_bytes()
    again = corral("run", str(good), "--id", "keep")
    assert again.returncode == 2 and "already ended" in again.stderr
    assert journal.read_bytes() == before


def test_missing_spec_file(corral):
    result = corral("run", "/nonexistent/spec.yaml")
    assert result.returncode == 2
    assert "/nonexistent/spec.yaml" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_assignment(corral, spec_file):
    spec = spec_file("""
name: a
processes:
  - {name: a, cmd: "true"}
""")
    result = corral("run", str(spec), "-P", "http")
    assert result.returncode == 2
    assert "NAME=VALUE" in result.stderr
