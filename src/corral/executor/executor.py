"""corral.Executor: a concurrent.futures.Executor whose calls are durable, isolated jobs.

See the package docstring (corral/executor/__init__.py) for the design and the semantics.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

from corral.executor import client, daemon
from corral.executor.driver import Driver
from corral.executor.future import Future, Options
from corral.supervisor.layout import Layout, default_root, valid_id

__all__ = ["Executor", "Future"]

P = ParamSpec("P")
T = TypeVar("T")


_current: Executor | None = None


class Executor(cf.Executor):
    """Run Python callables as durable, isolated corral jobs (see the README's Python API)."""

    def __init__(
        self,
        id: str | None = None,
        root: str | os.PathLike[str] | None = None,
        max_workers: int | None = None,
        backend: Literal["local", "slurm"] = "local",
        slurm: dict[str, Any] | None = None,
        retries: int = 0,
        timeout: float | None = None,
        *,
        warm: bool = True,
        _job: int | None = None,
    ) -> None:
        if id is None:
            id = f"executor-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        if not valid_id(id):
            raise ValueError(f"id {id!r}: use letters, digits, '.', '-' and '_'")
        if backend not in ("local", "slurm"):
            raise ValueError(f"backend {backend!r}: expected 'local' or 'slurm'")
        if max_workers is not None and max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.id = id
        self.root = Path(root).absolute() if root is not None else default_root()
        self.layout = Layout(self.root, id)
        self._options = Options(timeout=timeout, retries=retries)
        spec = daemon.ensemble_for(max_workers, backend, slurm) if _job is None else None
        self._driver = Driver(self.layout, _job, spec)
        self._driver.warm = warm
        self._driver.connect()

    # -- the concurrent.futures API -------------------------------------------------------------

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Journal a call (returns once it is durable; a call with unfinished futures among its
        arguments is journaled when they finish)."""
        self._check_open()
        fut = self._driver.prepare(fn, args, kwargs, self._options)
        self._driver.send([fut])
        return fut

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[T]:
        """Like Executor.map; the calls are journaled in batches (one request per 2,000)."""
        self._check_open()
        end = None if timeout is None else time.monotonic() + timeout
        futs = [self._driver.prepare(fn, args, {}, self._options) for args in zip(*iterables, strict=False)]
        self._driver.send(futs)

        def results() -> Iterator[T]:
            try:
                futs.reverse()
                while futs:
                    left = None if end is None else end - time.monotonic()
                    yield futs.pop().result(left)
            finally:
                for f in futs:
                    f.cancel()

        return results()

    def with_options(
        self,
        *,
        timeout: float | None = None,
        retries: int | None = None,
        resources: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> Executor:
        """A view of this executor whose calls get these options (None: keep the current)."""
        view = object.__new__(Executor)  # not copy.copy: that would pickle us (a new handle)
        view.__dict__.update(self.__dict__)
        opts = self._options
        view._options = replace(
            opts,
            timeout=opts.timeout if timeout is None else timeout,
            retries=opts.retries if retries is None else retries,
            resources=opts.resources if resources is None else dict(resources),
            key=key,
        )
        return view

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        driver = self._driver
        if driver.closed:
            return
        driver.closed = True
        with driver.lock:
            futs = list(driver.futures.values())
        if cancel_futures:
            for f in futs:
                f.cancel()  # those not journaled yet
            running = [f for f in futs if not f.done()]
            if running and driver.job is None and not driver.lost:
                with contextlib.suppress(client.SupervisorGone):  # gone: nothing runs to stop
                    client.ask(driver.address, {"op": "requeue"})
                for f in running:
                    driver.settle(f, cf.CancelledError(f"call {f.name} re-queued: the next executor runs it"))
        elif wait:
            cf.wait(futs)
        if driver.watch is not None:
            driver.watch.close()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # Ctrl-C in the driver: stop the running calls and re-queue them (not failures)
        self.shutdown(wait=True, cancel_futures=exc_type is KeyboardInterrupt)

    def _check_open(self) -> None:
        if self._driver.closed:
            raise RuntimeError("cannot submit calls after shutdown")

    # -- nesting --------------------------------------------------------------------------------

    @staticmethod
    def current() -> Executor:
        """Inside a call: the executor that runs it (to submit more calls). Outside: error."""
        global _current
        job, task, root = (os.environ.get(k) for k in ("CORRAL_JOB", "CORRAL_TASK_ID", "CORRAL_ROOT"))
        if job is None or task is None or root is None:
            raise RuntimeError("Executor.current() is only available inside a call")
        if _current is None or _current.id != task or _current._driver.closed:
            _current = Executor(id=task, root=root, _job=int(job))
        return _current

    def __reduce__(self) -> tuple[Any, ...]:
        return (_handle, (str(self.root), self.id))

    @property
    def address(self) -> str:
        """Where this executor's supervisor is reached: its unix socket, or inside a call
        running on another host (a Slurm node), the TCP address the call was given."""
        return self._driver.address

    def __repr__(self) -> str:
        return f"corral.Executor(id={self.id!r}, root={str(self.root)!r})"


def _handle(root: str, ident: str) -> Executor:
    """An executor unpickled inside a call: the running executor's handle."""
    if os.environ.get("CORRAL_TASK_ID") == ident:
        return Executor.current()
    return Executor(id=ident, root=root)
