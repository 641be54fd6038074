"""What the benchmark scripts share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def bytecode_env(work: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """An environment in which corral starts from compiled bytecode, as an installed package
    does. A checkout run with PYTHONDONTWRITEBYTECODE=1 (as in some sandboxes) would recompile
    every module at every start (~40 ms per `corral` process here). The cache lives under the
    benchmark's own directory (PYTHONPYCACHEPREFIX), warmed once; nothing is written into the
    source tree."""
    env = dict(os.environ if env is None else env)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    subprocess.run([sys.executable, "-c", "import corral.cli.main"], env=env, check=True)
    return env
