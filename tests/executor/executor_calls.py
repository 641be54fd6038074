"""Functions the executor tests run as calls (pickled by value: see conftest.py)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any


def square(x: int) -> int:
    return x * x


def add(*xs: int) -> int:
    return sum(xs)


def total(values: Any) -> int:
    """Sums numbers in nested lists, tuples and dict values."""
    if isinstance(values, dict):
        return sum(total(v) for v in values.values())
    if isinstance(values, list | tuple):
        return sum(total(v) for v in values)
    return int(values)


def fail(message: str) -> None:
    raise ValueError(message)


def exit_with(code: int) -> None:
    os._exit(code)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def record(path: str, tag: str) -> None:
    """Append one line: a side effect the tests count."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{tag}\n".encode())
    finally:
        os.close(fd)


def counted(path: str, i: int, gate: str | None = None) -> int:
    """Record a start, wait for `gate` to exist (bounded), return i * i."""
    record(path, str(i))
    if gate is not None:
        deadline = time.monotonic() + 120
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.02)
    return i * i


def flaky(path: str, i: int) -> int:
    """Fails on its first attempt (a marker file remembers it), succeeds on the second."""
    marker = Path(path) / f"tried-{i}"
    record(str(Path(path) / "starts"), str(i))
    if not marker.exists():
        marker.touch()
        raise RuntimeError(f"first attempt of {i}")
    return i


def fib(n: int) -> int:
    if n < 2:
        return n
    import corral

    ex = corral.Executor.current()
    a, b = ex.submit(fib, n - 1), ex.submit(fib, n - 2)
    return a.result() + b.result()


def wait_for_myself(n: int) -> int:
    import corral

    return corral.Executor.current().submit(wait_for_myself, n).result()


def nested_with_handle(ex: Any, n: int) -> int:
    """Uses the executor it was given (pickled as a handle)."""
    return ex.submit(square, n).result() + 1


def unpicklable_result() -> Any:
    import threading

    return threading.Lock()


def say(text: str) -> str:
    print(text, flush=True)
    return text


def nested_where(n: int) -> tuple[str, str, int]:
    """Where this call reached its executor from (the address it used, CORRAL_CONTROL), and
    a nested call's result."""
    import corral

    ex = corral.Executor.current()
    return ex.address, os.environ.get("CORRAL_CONTROL", ""), ex.submit(square, n).result()


def wait_on_two(n: int) -> int:
    """Waits for two nested calls through concurrent.futures.wait (all, then first)."""
    from concurrent.futures import FIRST_COMPLETED, wait

    import corral

    ex = corral.Executor.current()
    a, b = ex.submit(square, n), ex.submit(square, n + 1)
    done, not_done = wait([a, b])
    assert done == {a, b} and not not_done
    c, d = ex.submit(square, n + 2), ex.submit(square, n + 3)
    first, _ = wait([c, d], return_when=FIRST_COMPLETED)
    assert first
    wait([c, d])
    return a.result() + b.result() + c.result() + d.result()


def collect_as_completed(n: int) -> list[int]:
    """Collects nested calls through concurrent.futures.as_completed."""
    import concurrent.futures as cf

    import corral

    ex = corral.Executor.current()
    futs = [ex.submit(square, i) for i in range(n)]
    return sorted(f.result() for f in cf.as_completed(futs, timeout=600))
