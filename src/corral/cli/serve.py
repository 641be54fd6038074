"""`corral serve`: the observer's web page, JSON API and metrics (see corral/observe)."""

from __future__ import annotations

from pathlib import Path

import click

from corral.cli.common import root, user_errors


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8420, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The bearer token (default: ROOT/serve.token, created at first start, mode 0600).",
)
@user_errors
def serve(host: str, port: int, token_file: Path | None) -> None:
    """Serve the tasks under the root: web page at /, JSON API at /api/v1, metrics at /metrics."""
    from corral.errors import UserError
    from corral.observe.auth import TokenError
    from corral.observe.server import serve as run_server

    try:
        run_server(root(), host, port, token_file)
    except TokenError as exc:
        raise UserError(str(exc)) from None
