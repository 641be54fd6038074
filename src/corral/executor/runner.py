"""The process of one call: load its payload, run it, write its result, exit.

`python -m corral.executor.runner DIR/H` runs the call whose payload is `DIR/H.in` and writes
`DIR/H.out`. Locally the call zygote runs `main()` in a forked child instead (no Python
start-up per call); on Slurm nodes the command itself runs. Exit status 0: a value was
returned and stored; 1: an exception was raised (stored), or the result could not be pickled;
2: the payload is missing or cannot be loaded. A call that dies leaves no `.out` (a stale one
is removed first), and its job's exit status says how it died.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import traceback
from typing import Any

from corral.executor.payload import Ref, read_result, substitute, write_result


class _DependencyMissing(Exception):
    pass


def _resolve(value: Any, folder: str) -> Any:
    """Replace Refs (in lists, tuples and dicts) by the results they stand for."""

    def result(ref: Ref) -> Any:
        out = read_result(os.path.join(folder, ref.call + ".out"))
        if out is None or out[0] != "ok":
            raise _DependencyMissing(f"the result of {ref.name} is not stored")
        return out[1]

    return substitute(value, Ref, result)


def main(base: str) -> int:
    folder = os.path.dirname(base)
    out_path = base + ".out"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(out_path)  # an earlier attempt's: a death now must not look like its outcome
    try:
        with open(base + ".in", "rb") as f:
            meta = pickle.load(f)
            for entry in reversed(meta["path"]):
                if entry not in sys.path:
                    sys.path.insert(0, entry)
            fn = pickle.load(f)
            args, kwargs = pickle.load(f)
    except Exception as exc:
        print(f"corral: cannot load the call {base}.in: {exc!r}", file=sys.stderr)
        return 2
    name = meta["name"]
    if meta.get("timeout"):
        # dies by SIGALRM (default action) even in C code; the driver names the timeout
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.setitimer(signal.ITIMER_REAL, float(meta["timeout"]))
    try:
        args = _resolve(args, folder)
        kwargs = _resolve(kwargs, folder)
        value = fn(*args, **kwargs)
    except BaseException as exc:
        text = traceback.format_exc()
        sys.stderr.write(text)
        try:
            write_result(out_path, ("err", exc, text, f"{type(exc).__name__}: {exc}"))
        except Exception:  # the exception itself cannot be pickled: keep its text
            write_result(out_path, ("err", None, text, f"{type(exc).__name__}: {exc}"))
        return 1
    try:
        write_result(out_path, ("ok", value))
    except Exception as exc:
        message = f"the result of {name} cannot be pickled: {type(exc).__name__}: {exc}"
        print(f"corral: {message}", file=sys.stderr)
        write_result(out_path, ("unpicklable", message))
        return 1
    return 0


def run_and_exit(base: str) -> None:
    """In a forked child: run the call, flush, and leave without the parent's clean-up."""
    code = 70
    try:
        code = main(base)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
