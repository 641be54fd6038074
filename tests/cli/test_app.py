"""The command registry: every command resolves, and `corral --help` imports none of them."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from corral.cli.app import COMMANDS, cli


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
    code = (
        "import sys\n"
        "from corral.cli.app import cli\n"
        "try:\n"
        "    cli(['--help'], prog_name='corral')\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in sys.modules if m.startswith(('corral.cli.', 'corral.supervisor',"
        " 'corral.journal', 'rich')) and m != 'corral.cli.app')\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = result.stdout
    listed = {line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == {name for name, e in COMMANDS.items() if not e.hidden}
    assert "HEAVY []" in result.stderr


def test_unknown_command_is_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "corral", "no-such-command"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "No such command" in result.stderr
