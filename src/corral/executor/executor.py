"""corral.Executor: a concurrent.futures.Executor whose calls are durable, isolated jobs.

See the package docstring (corral/executor/__init__.py) for the design and the semantics.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

import cloudpickle

from corral.executor import client, daemon, waiting
from corral.executor.errors import CallError, CallFailed, DependencyFailed, RemoteTraceback
from corral.executor.payload import (
    PROTOCOL,
    Ref,
    call_hash,
    dumps_args,
    identity,
    name_of,
    payload_bytes,
    read_result,
    substitute,
    write_new,
)
from corral.spec.units import parse_size
from corral.supervisor.layout import Layout, default_root, valid_id

P = ParamSpec("P")
T = TypeVar("T")
BATCH = 2000  # calls per request to the supervisor


class Future(cf.Future[T]):
    """A call's future. Inside a call, result() and exception() give the call's slot back
    while they wait (the call is paused, SIGSTOP, and continued when the result is there)."""

    def __init__(self, driver: _Driver, call: str, name: str) -> None:
        super().__init__()
        self._driver, self.call, self.name = driver, call, name
        self.job: int | None = None  # the job number in the executor's ensemble, once journaled
        self._deps: list[Future[Any]] = []
        self._row: dict[str, Any] = {}
        self._claimed = False
        if driver.job is not None:  # inside a call: concurrent.futures.wait pauses it too
            self._waiters = waiting.Waiters(self, driver.pause_for)

    def result(self, timeout: float | None = None) -> T:
        if not self.done() and self._driver.job is not None:
            self._driver.yield_for(self)
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if not self.done() and self._driver.job is not None:
            self._driver.yield_for(self)
        return super().exception(timeout)


@dataclass(frozen=True)
class Options:
    timeout: float | None = None
    retries: int = 0
    resources: dict[str, Any] = field(default_factory=dict)
    key: str | None = None


class _Driver:
    """What the views of one executor (with_options) share: futures, the watch, the gating
    of calls on their dependencies."""

    def __init__(self, layout: Layout, job: int | None, spec: Any) -> None:
        self.layout = layout
        self.spec = spec  # the ensemble to start or recover; None for a handle inside a call
        self.reconnecting = threading.Lock()
        self.job = job  # inside a call: its job number
        # the supervisor's address: its unix socket, or (inside a call on a Slurm node) TCP
        self.address = client.address_for(layout.id, layout.control, job is not None)
        self.calls = daemon.calls_dir(layout)
        self.lock = threading.RLock()
        self.futures: dict[str, Future[Any]] = {}
        # ends that came on the watch stream before the answer naming their job (a fast call)
        self.early: dict[str, tuple[int, str, int | None, str]] = {}
        self.pickled: dict[int, tuple[Any, bytes]] = {}  # id(fn) -> (fn, its pickle)
        self.watch: client.Watch | None = None
        self.closed = False
        self.lost = False
        self.warm = True  # the call zygote may import the calls' modules (warm.py)

    # -- the supervisor -------------------------------------------------------------------------

    def connect(self) -> None:
        """Watch the supervisor (starting or recovering it first when we own the executor).
        A supervisor that is just ending may accept and then drop us: try again."""
        deadline = time.monotonic() + 30.0
        while True:
            try:
                if self.spec is not None:
                    daemon.ensure(self.layout, self.spec)
                self.watch = client.Watch(self.address, self.on_ends, self.on_lost)
                return
            except (OSError, ValueError):
                if self.spec is None or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def reconnect(self) -> None:
        """The supervisor went away (it ended, or died): start or recover it, watch it again,
        and ask again for every journaled call not finished (their ends may have been missed)."""
        with self.reconnecting:
            if self.watch is not None and not self.watch.lost:
                return
            self.connect()
        with self.lock:
            unfinished = [
                f for f in self.futures.values() if f.job is not None and f.job >= 0 and not f.done()
            ]
        if unfinished:
            self._ask(unfinished)

    def on_lost(self) -> None:
        with self.lock:
            busy = any(f.job is not None and f.job >= 0 and not f.done() for f in self.futures.values())
        if not busy:  # nothing to wait for: the next submission reconnects
            return
        try:
            if self.spec is None:
                raise client.SupervisorGone("the executor's supervisor is gone")
            self.reconnect()
        except Exception as exc:
            self.lost = True
            with self.lock:
                waiting = [f for f in self.futures.values() if f.job is not None and not f.done()]
            for fut in waiting:
                self._settle(fut, CallFailed(fut.name, fut.job or -1, f"lost: {exc}"))

    def on_ends(self, ends: list[Any]) -> None:
        for call, job, state, code, reason in ends:
            with self.lock:
                fut = self.futures.get(call)
                if fut is None:
                    continue
                if fut.job is None:  # its end overtook the answer to our calls request
                    self.early[call] = (job, state, code, reason)
                    continue
            self.finish(fut, job, state, code, reason)

    # -- outcomes -------------------------------------------------------------------------------

    def _settle(self, fut: Future[Any], outcome: Any, ok: bool = False) -> None:
        with self.lock:
            if fut.done():
                return
            if fut._state == "PENDING":  # not journaled yet (a failure at submission)
                fut.set_running_or_notify_cancel()
            if ok:
                fut.set_result(outcome)
            else:
                fut.set_exception(outcome)

    def finish(self, fut: Future[Any], job: int, state: str, code: int | None, reason: str = "") -> None:
        out = read_result(os.path.join(self.calls, fut.call + ".out"))
        if state == "SUCCESS" and out is not None and out[0] == "ok":
            self._settle(fut, out[1], ok=True)
        elif out is not None and out[0] == "err":
            exc = (
                out[1] if isinstance(out[1], BaseException) else CallError(f"call {fut.name} raised {out[3]}")
            )
            if out[2]:
                exc.__cause__ = RemoteTraceback(out[2])
                exc.add_note(f"(raised in call {fut.name}, job {job}; its traceback above)")
            self._settle(fut, exc)
        elif out is not None and out[0] == "unpicklable":
            self._settle(fut, CallError(out[1]))
        else:
            sig = -code if code is not None and code < 0 else None
            failed = CallFailed(fut.name, job, state, None if sig else code, sig)
            if reason:
                failed.add_note(f"corral's reason: {reason}")
            self._settle(fut, failed)

    # -- submission -----------------------------------------------------------------------------

    def fn_pickle(self, fn: Any) -> bytes:
        hit = self.pickled.get(id(fn))
        if hit is not None and hit[0] is fn:
            return hit[1]
        blob: bytes = cloudpickle.dumps(fn, protocol=PROTOCOL)
        if len(self.pickled) > 1000:
            self.pickled.clear()
        self.pickled[id(fn)] = (fn, blob)
        return blob

    def prepare(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], opts: Options) -> Future[Any]:
        """The call's future, its payload on disk; not yet sent (see send())."""
        name = name_of(fn)
        deps: list[Future[Any]] = []
        try:
            args_blob = dumps_args(_swap(args, deps), _swap(kwargs, deps))
            fn_blob = self.fn_pickle(fn)
        except Exception as exc:
            fut: Future[Any] = Future(self, "", name)
            what = "the function" if "args_blob" in locals() else "an argument"
            fut.set_exception(
                CallError(f"call {name}: {what} cannot be pickled: {type(exc).__name__}: {exc}")
            )
            return fut
        call = call_hash(identity(name, args_blob, opts.key))
        with self.lock:
            known = self.futures.get(call)
            if known is not None:
                return known
            fut = Future(self, call, name)
            self.futures[call] = fut
        base = os.path.join(self.calls, call)
        module = getattr(fn, "__module__", None) if self.warm else None
        module = module if isinstance(module, str) and module != "__main__" else None
        write_new(base + ".in", payload_bytes(name, fn_blob, args_blob, opts.timeout, module))
        fut._deps = deps
        fut._row = _row(call, name, opts)
        return fut

    def send(self, futs: list[Future[Any]]) -> None:
        """Journal the calls whose dependencies are done; hold the others until they are."""
        ready: list[Future[Any]] = []
        for fut in futs:
            if fut.done() or fut.job is not None or not fut.call:
                continue
            if not fut._deps:
                out = read_result(os.path.join(self.calls, fut.call + ".out"))
                if out is not None and out[0] == "ok":  # stored by an earlier driver: done
                    self._settle(fut, out[1], ok=True)
                    continue
                ready.append(fut)
                continue
            failed = next((d for d in fut._deps if d.done() and d.exception() is not None), None)
            if failed is not None:
                self._settle(fut, DependencyFailed(fut.name, failed.name, failed.exception()))
            elif all(d.done() for d in fut._deps):
                fut._deps = []
                ready.append(fut)
            else:
                for dep in fut._deps:
                    dep.add_done_callback(lambda _d, fut=fut: self._released(fut))  # type: ignore[misc]
        for start in range(0, len(ready), BATCH):
            self._journal(ready[start : start + BATCH])

    def _released(self, fut: Future[Any]) -> None:
        """A dependency of `fut` finished: send it once all have (or one failed)."""
        deps = fut._deps
        if not (all(d.done() for d in deps) or any(d.done() and d.exception() is not None for d in deps)):
            return
        with self.lock:
            if fut._claimed or fut.done():
                return
            fut._claimed = True  # one callback sends it
        self.send([fut])

    def _journal(self, futs: list[Future[Any]]) -> None:
        futs = [f for f in futs if f.set_running_or_notify_cancel()]
        if not futs:
            return
        try:
            self._ask(futs)
        except client.SupervisorGone:
            if self.spec is None:
                raise
            if self.watch is not None:
                self.watch.lost = True
            self.reconnect()
            self._ask([f for f in futs if not f.done()])
        except BaseException as exc:
            for fut in futs:
                self._settle(fut, exc if isinstance(exc, Exception) else CallError(repr(exc)))
            raise

    def _ask(self, futs: list[Future[Any]]) -> None:
        answer = client.ask(self.address, {"op": "calls", "rows": [f._row for f in futs]})
        if not answer.get("ok"):
            raise CallError(f"the executor refused the calls: {answer.get('error')}")
        for fut, entry in zip(futs, answer["calls"], strict=True):
            with self.lock:
                fut.job = entry[0]
                early = self.early.pop(fut.call, None)
            if len(entry) > 1:
                self.finish(fut, entry[0], entry[1], entry[2])
            elif early is not None:
                self.finish(fut, *early)

    # -- inside a call: waiting without holding a slot ------------------------------------------

    def yield_for(self, fut: Future[Any]) -> None:
        self.pause_for([fut], False, fut.done)

    def pause_for(self, futs: list[Future[Any]], first: bool, over: Callable[[], bool]) -> None:
        """Inside a call, until `over()`: pause the call (its slot is free) while all of `futs`
        (or, `first`, any one of them) are unfinished."""
        when = cf.FIRST_COMPLETED if first else cf.ALL_COMPLETED
        while not over():
            pending = [f for f in futs if not f.done()]
            if not pending:  # all done: what waits on them is set already
                break
            waits = list({id(w): w for f in pending for w in self._blocking(f)}.values())
            if not waits:
                with waiting.internal():
                    cf.wait(pending, timeout=0.05, return_when=when)
                continue
            ask: dict[str, Any] = {"op": "yield", "job": self.job, "calls": [w.call for w in waits]}
            if first:
                ask["any"] = True
            try:
                answer = client.ask(self.address, ask, timeout=None)
            except client.SupervisorGone:
                # a yield is held at most an hour; then (or if the supervisor restarted) again
                if not client.alive(self.address):
                    raise
                continue
            if not answer.get("ok"):
                raise CallError(f"call {pending[0].name}: {answer.get('error')}")
            with waiting.internal():  # their ends follow the wake-up on the watch stream
                cf.wait(waits, timeout=30.0, return_when=when)

    def _blocking(self, fut: Future[Any]) -> list[Future[Any]]:
        """The journaled, unfinished calls `fut` waits for (itself, or its dependencies')."""
        out: list[Future[Any]] = []
        todo, seen = [fut], set()
        while todo:
            f = todo.pop()
            if id(f) in seen or f.done():
                continue
            seen.add(id(f))
            if f.job is not None and f.job >= 0:
                out.append(f)
            else:
                todo.extend(f._deps)
        return out


def _row(call: str, name: str, opts: Options) -> dict[str, Any]:
    row: dict[str, Any] = {"call": call, "fn": name[:500]}
    if opts.retries:
        row["retries"] = opts.retries
    if opts.timeout:
        row["timeout"] = float(opts.timeout)
    res = opts.resources
    if res.get("cpus"):
        row["cpus"] = float(res["cpus"])
    if res.get("memory"):
        mem = res["memory"]
        row["memory"] = parse_size(mem) if isinstance(mem, str) else int(mem)
    return row


def _swap(value: Any, deps: list[Future[Any]]) -> Any:
    """Futures (in lists, tuples and dicts) become Refs; they are the call's dependencies."""

    def ref(future: Future[Any]) -> Ref:
        deps.append(future)
        return Ref(future.call, future.name)

    return substitute(value, Future, ref)


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
        self._driver = _Driver(self.layout, _job, spec)
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
                    driver._settle(
                        f, cf.CancelledError(f"call {f.name} re-queued: the next executor runs it")
                    )
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
