"""The command registry: every command resolves, and start-up imports only what is needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from corral.cli.app import COMMANDS, cli

# what `corral --help` and `corral status` on an empty root must not import (issue 10: start-up)
HEAVY = ("corral.supervisor.session", "corral.supervisor.engine", "corral.journal", "corral.backends",
         "corral.core", "corral.spec", "corral.observe", "msgspec", "rich", "yaml")  # fmt: skip

PROBE = """
import sys
from corral.cli.app import cli
try:
    cli(sys.argv[1:], prog_name="corral")
except SystemExit:
    pass
print("LOADED", sorted(m for m in sys.modules if m.startswith({heavy!r}) or
      (m.startswith("corral.cli.") and m not in ("corral.cli.app", "corral.cli.common", "corral.cli.{own}"))),
      file=sys.stderr)
"""


def _loaded(argv: list[str], own: str) -> tuple[str, str]:
    code = PROBE.format(heavy=HEAVY, own=own)
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    return result.stdout, result.stderr


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_registered_command_resolves_with_its_own_short_help(name: str) -> None:
    entry = COMMANDS[name]
    command = cli.get_command(click.Context(cli), name)
    assert isinstance(command, click.Command)
    assert command.name == name
    assert command.hidden is entry.hidden
    # the table's short help is the docstring's first sentence (what click would show)
    assert command.help is not None
    assert entry.short_help == click.utils.make_default_short_help(command.help, 10_000)


def test_help_lists_every_visible_command_without_importing_them() -> None:
    out, loaded = _loaded(["--help"], own="app")
    listed = {line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == {name for name, e in COMMANDS.items() if not e.hidden}
    assert "LOADED []" in loaded


def test_status_of_an_empty_root_loads_neither_journal_nor_supervisor(tmp_path: Path) -> None:
    out, loaded = _loaded(["--root", str(tmp_path), "status"], own="status")
    assert out.strip() == "no tasks"
    assert "LOADED ['corral.cli.tables']" in loaded


def test_unknown_command_is_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "corral", "no-such-command"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "No such command" in result.stderr
