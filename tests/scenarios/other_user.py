"""Acting as another user (uid 65534, `nobody`) from a test that runs as root."""

from __future__ import annotations

import importlib
import os
import pkgutil
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

NOBODY = 65534


def as_nobody(fn: Callable[[], int]) -> tuple[int, str]:
    """Run fn in a forked child that became uid/gid 65534; (its exit status, its stderr).

    In-process on purpose: the interpreter under /root is not reachable by nobody, the modules
    the child needs are imported before the fork."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 70
        try:
            os.close(read)
            sys.stderr = open(write, "w", buffering=1)  # pytest replaced it
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            code = fn()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        err = f.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err


def preload_corral() -> None:
    """Import every corral module (and so what they import) before a fork to uid 65534: the
    child cannot read the interpreter's site-packages under /root, nor a checkout in a 0700
    directory, so a module the command would import lazily must already be loaded."""
    import corral as package

    for info in pkgutil.walk_packages(package.__path__, "corral."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    for name in ("secrets", "datetime", "json", "traceback"):  # imported inside functions
        importlib.import_module(name)


@pytest.fixture
def shared_root(corral) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """A root another user may traverse (the test's tmp_path is root's, 0700)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user (uid 65534)")
    preload_corral()
    base = Path(tempfile.mkdtemp(prefix="corral-shared-"))
    base.chmod(0o755)
    corral.root = base / "root"
    corral.root.mkdir(mode=0o755)
    corral.env["CORRAL_ROOT"] = str(corral.root)
    yield corral.root
    shutil.rmtree(base, ignore_errors=True)
