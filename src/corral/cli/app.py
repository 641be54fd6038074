"""The `corral` command group and its registry of commands.

Adding a command (e.g. `corral serve`): write a module under `corral/cli/` that defines a
`click.command()` (its docstring's first line is its short help), then add ONE line to
`COMMANDS` below, keeping the table sorted by name:

    "serve": Entry("corral.cli.serve", "serve", "Serve the root over HTTP."),

The module is imported only when its command runs (or its own `--help` is asked), so
`corral --help` and every other command stay fast; the short help shown by `corral --help`
comes from this table, and tests/cli/test_app.py checks it against the command's docstring.
Shared helpers (root, layout, user errors, the supervisor's control socket) are in
`corral.cli.common`; importing click and the standard library only is the rule for this file.

Exit status: 0 success, 1 failed, 3 killed or lost, 2 bad input (one line on stderr, no
traceback). Reporting commands take `--json`; its shape is documented in the README.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import NamedTuple

import click


class Entry(NamedTuple):
    """Where a command lives and what `corral --help` says about it without importing it."""

    module: str
    attr: str
    short_help: str
    hidden: bool = False


COMMANDS: dict[str, Entry] = {
    "gc": Entry("corral.cli.gc", "gc", "Remove what finished tasks and ensembles left (journals, logs, sandboxes), oldest first."),
    "heartbeat": Entry("corral.cli.jobs", "heartbeat", "Tell the supervisor this job is alive (for jobs with `heartbeat:`)."),
    "inspect": Entry("corral.cli.run", "inspect", "Validate SPEC and print the task as it would run (templates filled in)."),
    "kill": Entry("corral.cli.control", "kill", "Kill ID gracefully (final processes still run)."),
    "lose": Entry("corral.cli.control", "lose", "Give up on ID: kill every live process tree, run no finalizers, mark it LOST."),
    "pause": Entry("corral.cli.control", "pause", "Stop (SIGSTOP) the process trees of ID, or of one PROCESS."),
    "read": Entry("corral.cli.status", "read", "Replay the journal of ID and print its history."),
    "recover": Entry("corral.cli.control", "recover", "Take control of ID after its supervisor died: re-attach, recover exits, carry on."),
    "resume": Entry("corral.cli.control", "resume", "Continue (SIGCONT) what `pause` stopped."),
    "run": Entry("corral.cli.run", "run", "Run the task or ensemble in SPEC until it ends."),
    "serve": Entry("corral.cli.serve", "serve", "Serve the tasks under the root: web page at /, JSON API at /api/v1, metrics at /metrics."),
    "simplerun": Entry("corral.cli.run", "simplerun", "Run one command as a one-process task: corral simplerun -- CMD ARGS..."),
    "slurm-job": Entry("corral.cli.slurm_job", "slurm_job", "On a compute node: supervise job JOB of ID (started by the Slurm backend's sbatch).", hidden=True),
    "worker": Entry("corral.cli.pilot_worker", "worker", "On a compute node: take jobs of ensemble ID from its launcher and run them.", hidden=True),
    "status": Entry("corral.cli.status", "status", "Tasks and ensembles under the root, with their state."),
    "submit": Entry("corral.cli.jobs", "submit", "Add jobs to a live ensemble; prints their job numbers."),
    "tail": Entry("corral.cli.status", "tail", "The log of the latest run: tail ID [PROCESS] for a task, tail ID JOB [PROCESS] for an ensemble."),
    "wait": Entry("corral.cli.jobs", "wait", "Block until the given jobs end; exit 0 if all succeeded, 1 otherwise."),
}  # fmt: skip


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command is resolved."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        command = getattr(importlib.import_module(entry.module), entry.attr)
        assert isinstance(command, click.Command), entry
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # like click.Group.format_commands, from the table: listing must not import every command
        shown = [(name, e) for name, e in sorted(COMMANDS.items()) if not e.hidden]
        if not shown:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in shown)
        rows = [(name, click.utils.make_default_short_help(e.short_help, limit)) for name, e in shown]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of journals and logs (default: $CORRAL_ROOT, else ~/.local/state/corral).",
)
@click.version_option(package_name="corral")
@click.pass_context
def cli(ctx: click.Context, root: Path | None) -> None:
    """corral: run tasks and ensembles of processes, and never lose track of them."""
    from corral.supervisor.layout import default_root

    where = (root or default_root()).absolute()
    try:  # paths under the root are recorded (journal, control socket): they must be text
        str(where).encode("utf-8")
    except UnicodeEncodeError:
        from corral.cli.common import fail

        fail(f"--root {str(where)!r}: the path is not valid UTF-8; use another directory")
    ctx.obj = where


def main() -> None:
    cli(prog_name="corral")
