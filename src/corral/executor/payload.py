"""A call on disk: its identity, its payload (function and arguments) and its result.

Files live in ROOT/ID/calls/: `H.in` (written by whoever submits the call, before the call is
journaled) and `H.out` (written by the call's process before it exits), where H is a hash of
the call's identity. Neither is fsync'd: like the reaper's ledger they survive the death of
any process, not a power loss (a missing payload fails the call; the driver writes it again
when it submits the call again).

Identity: an explicit `key=` option, else "MODULE.QUALNAME:" + a SHA-256 of the arguments
pickled (futures among them replaced by their own identities). `H` is a SHA-256 of that.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cloudpickle

PROTOCOL = 5


@dataclass(frozen=True, slots=True)
class Ref:
    """Stands for a future's result inside a payload: the call's process reads that result."""

    call: str  # the hash H of the call it stands for
    name: str


def substitute(value: Any, kind: type, leaf: Callable[[Any], Any]) -> Any:
    """`value` with every instance of `kind` replaced by leaf(it), inside lists, tuples and dicts.

    Only those exact container types are walked (a subclass may not rebuild from a list); the
    driver turns Futures into Refs with it, the call turns Refs back into results.
    """
    if isinstance(value, kind):
        return leaf(value)
    if type(value) is list:
        return [substitute(v, kind, leaf) for v in value]
    if type(value) is tuple:
        return tuple(substitute(v, kind, leaf) for v in value)
    if type(value) is dict:
        return {k: substitute(v, kind, leaf) for k, v in value.items()}
    return value


def name_of(fn: Any) -> str:
    module = getattr(fn, "__module__", None) or "?"
    qual = getattr(fn, "__qualname__", None) or getattr(type(fn), "__qualname__", "callable")
    return f"{module}.{qual}"


def call_hash(identity: str) -> str:
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


def identity(fn_name: str, args_blob: bytes, key: str | None) -> str:
    if key is not None:
        return f"key:{key}"
    return f"{fn_name}:{hashlib.sha256(args_blob).hexdigest()}"


def dumps_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """Raises pickle.PicklingError (or others) when an argument cannot be pickled."""
    blob: bytes = cloudpickle.dumps((args, kwargs), protocol=PROTOCOL)
    return blob


def payload_bytes(
    name: str, fn_blob: bytes, args_blob: bytes, timeout: float | None, module: str | None = None
) -> bytes:
    # the metadata first, in plain pickle: sys.path must be set before the function is
    # unpickled (a function pickled by reference is imported from the driver's path);
    # `module`: the function's module, which the call zygote may import once (warm.py)
    meta = {"name": name, "path": list(sys.path), "timeout": timeout, "module": module}
    return pickle.dumps(meta, protocol=PROTOCOL) + fn_blob + args_blob


def write_new(path: str, data: bytes) -> None:
    """Write a file whole (temporary name, then rename), unless it exists already."""
    if os.path.exists(path):
        return
    _write_whole(path, data)


def _write_whole(path: str, data: bytes) -> None:
    """A private file (0600, like every file corral writes), whole: a temporary, renamed."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_result(path: str, outcome: tuple[Any, ...]) -> None:
    _write_whole(path, cloudpickle.dumps(outcome, protocol=PROTOCOL))


def read_result(path: str) -> tuple[Any, ...] | None:
    """("ok", value) | ("err", exception or None, traceback text, summary) |
    ("unpicklable", message); None when there is none (or it cannot be read back)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    try:
        out = pickle.loads(data)
    except Exception as exc:  # e.g. the result's class is not importable in the driver
        return ("err", None, "", f"the result could not be unpickled in the driver: {exc!r}")
    return out if isinstance(out, tuple) and out else None
