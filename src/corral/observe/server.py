"""Starting the server: the token, the address rule, uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path

from corral.observe.auth import is_loopback, load_or_create_token

MAX_CONNECTIONS = 512


def serve(root: Path, host: str, port: int, token_file: Path | None) -> None:
    import uvicorn

    from corral.observe.app import create_app

    path = token_file or root / "serve.token"
    token = load_or_create_token(path, create=token_file is None)
    require_all = not is_loopback(host)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log = logging.getLogger("corral.observe")
    log.info(
        "serving %s on http://%s:%d (token in %s; %s)",
        root,
        host,
        port,
        path,
        "every request needs it" if require_all else "POST requests need it",
    )
    app = create_app(root, token, require_all=require_all)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
        limit_concurrency=MAX_CONNECTIONS,  # beyond it: 503, not a server out of file descriptors
        timeout_keep_alive=5,
    )
