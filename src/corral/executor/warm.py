"""Keeping the call zygote warm: the modules calls come from, imported once in the zygote.

A call's function pickled by reference is imported by the call's process when it unpickles
the function: a module with heavy imports (numpy, the driver's own script) would cost every
call its import again. So, after the zygote forks a call, it reads which module the call's
function comes from (the payload's metadata, `module`, set by the driver unless
`Executor(warm=False)`) and, the first time it sees that module, imports it itself; the calls
forked after that find it imported.

Importing someone's module in the zygote is done with care: first a probe (a forked child of
the zygote) imports it; only if the probe exits cleanly within PROBE_TIMEOUT, without having
started a thread (a forking process must stay single-threaded), does the zygote import it.
A module is tried once; `__main__` never. Module-level code so runs twice more (probe and
zygote), in the executor's environment (without a call's CORRAL_JOB).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import pickle
import select
import signal
import sys

PROBE_TIMEOUT = 30.0
MAX_MODULES = 200


def module_of(base: str) -> tuple[str, list[str]] | None:
    """The module of the call whose payload is BASE.in, and the driver's sys.path."""
    try:
        with open(base + ".in", "rb") as f:
            meta = pickle.load(f)
    except Exception:
        return None
    module = meta.get("module") if isinstance(meta, dict) else None
    if not isinstance(module, str) or not module or module == "__main__":
        return None
    path = meta.get("path")
    return module, [p for p in path if isinstance(p, str)] if isinstance(path, list) else []


def _extend_path(path: list[str]) -> None:
    for entry in reversed(path):
        if entry not in sys.path:
            sys.path.insert(0, entry)


def _probe(module: str, path: list[str]) -> bool:
    """Whether importing `module` in a forked child ends well, quickly, single-threaded."""
    try:
        pid = os.fork()
    except OSError:
        return False
    if pid == 0:
        code = 4
        try:
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            _extend_path(path)
            importlib.import_module(module)
            code = 0 if len(os.listdir("/proc/self/task")) == 1 else 3
        finally:
            os._exit(code)
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return False
    try:
        ready, _, _ = select.select([fd], [], [], PROBE_TIMEOUT)
        if not ready:
            os.killpg(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return bool(ready) and os.waitstatus_to_exitcode(status) == 0


def warm(base: str, tried: set[str]) -> bool:
    """Import the module of the call BASE in this process (the zygote), if it is safe;
    whether anything was imported."""
    found = module_of(base)
    if found is None:
        return False
    module, path = found
    if module in tried or module in sys.modules or len(tried) >= MAX_MODULES:
        return False
    tried.add(module)
    if not _probe(module, path):
        return False
    _extend_path(path)
    with contextlib.suppress(BaseException):
        importlib.import_module(module)
    gc.freeze()  # what it imported stays shared with the calls (no copy-on-write)
    return True
