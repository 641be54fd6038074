"""What the views of one executor (with_options) share: the supervisor's connection, the
futures and their outcomes, the gating of calls on their dependencies, and, inside a call,
waiting without holding a slot."""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import cloudpickle

from corral.executor import client, daemon, waiting
from corral.executor.errors import CallError, CallFailed, DependencyFailed, RemoteTraceback
from corral.executor.future import Future, Options, row_of, swap
from corral.executor.payload import (
    PROTOCOL,
    call_hash,
    dumps_args,
    identity,
    name_of,
    payload_bytes,
    read_result,
    write_new,
)
from corral.supervisor.layout import Layout

BATCH = 2000  # calls per request to the supervisor


class Driver:
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
                self.settle(fut, CallFailed(fut.name, fut.job or -1, f"lost: {exc}"))

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

    def settle(self, fut: Future[Any], outcome: Any, ok: bool = False) -> None:
        with self.lock:
            if fut.done():
                return
            if not fut.running():  # not journaled yet (a failure at submission): still PENDING
                fut.set_running_or_notify_cancel()
            if ok:
                fut.set_result(outcome)
            else:
                fut.set_exception(outcome)

    def finish(self, fut: Future[Any], job: int, state: str, code: int | None, reason: str = "") -> None:
        out = read_result(os.path.join(self.calls, fut.call + ".out"))
        if state == "SUCCESS" and out is not None and out[0] == "ok":
            self.settle(fut, out[1], ok=True)
        elif out is not None and out[0] == "err":
            exc = (
                out[1] if isinstance(out[1], BaseException) else CallError(f"call {fut.name} raised {out[3]}")
            )
            if out[2]:
                exc.__cause__ = RemoteTraceback(out[2])
                exc.add_note(f"(raised in call {fut.name}, job {job}; its traceback above)")
            self.settle(fut, exc)
        elif out is not None and out[0] == "unpicklable":
            self.settle(fut, CallError(out[1]))
        else:
            sig = -code if code is not None and code < 0 else None
            failed = CallFailed(fut.name, job, state, None if sig else code, sig)
            if reason:
                failed.add_note(f"corral's reason: {reason}")
            self.settle(fut, failed)

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
            args_blob = dumps_args(swap(args, deps), swap(kwargs, deps))
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
        fut.deps = deps
        fut.row = row_of(call, name, opts)
        return fut

    def send(self, futs: list[Future[Any]]) -> None:
        """Journal the calls whose dependencies are done; hold the others until they are."""
        ready: list[Future[Any]] = []
        for fut in futs:
            if fut.done() or fut.job is not None or not fut.call:
                continue
            if not fut.deps:
                out = read_result(os.path.join(self.calls, fut.call + ".out"))
                if out is not None and out[0] == "ok":  # stored by an earlier driver: done
                    self.settle(fut, out[1], ok=True)
                    continue
                ready.append(fut)
                continue
            failed = next((d for d in fut.deps if d.done() and d.exception() is not None), None)
            if failed is not None:
                self.settle(fut, DependencyFailed(fut.name, failed.name, failed.exception()))
            elif all(d.done() for d in fut.deps):
                fut.deps = []
                ready.append(fut)
            else:
                for dep in fut.deps:
                    dep.add_done_callback(lambda _d, fut=fut: self._released(fut))  # type: ignore[misc]
        for start in range(0, len(ready), BATCH):
            self._journal(ready[start : start + BATCH])

    def _released(self, fut: Future[Any]) -> None:
        """A dependency of `fut` finished: send it once all have (or one failed)."""
        deps = fut.deps
        if not (all(d.done() for d in deps) or any(d.done() and d.exception() is not None for d in deps)):
            return
        with self.lock:
            if fut.claimed or fut.done():
                return
            fut.claimed = True  # one callback sends it
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
                self.settle(fut, exc if isinstance(exc, Exception) else CallError(repr(exc)))
            raise

    def _ask(self, futs: list[Future[Any]]) -> None:
        answer = client.ask(self.address, {"op": "calls", "rows": [f.row for f in futs]})
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
                todo.extend(f.deps)
        return out
