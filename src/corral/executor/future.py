"""A call's future, and the options calls are submitted with (Executor.with_options)."""

from __future__ import annotations

import concurrent.futures as cf
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from corral.executor import waiting
from corral.executor.payload import Ref, substitute
from corral.spec.units import parse_size

if TYPE_CHECKING:
    from corral.executor.driver import Driver

T = TypeVar("T")


class Future(cf.Future[T]):
    """A call's future. Inside a call, result() and exception() give the call's slot back
    while they wait (the call is paused, SIGSTOP, and continued when the result is there)."""

    def __init__(self, driver: Driver, call: str, name: str) -> None:
        super().__init__()
        self._driver, self.call, self.name = driver, call, name
        self.job: int | None = None  # the job number in the executor's ensemble, once journaled
        self.deps: list[Future[Any]] = []
        self.row: dict[str, Any] = {}
        self.claimed = False
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


def row_of(call: str, name: str, opts: Options) -> dict[str, Any]:
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


def swap(value: Any, deps: list[Future[Any]]) -> Any:
    """Futures (in lists, tuples and dicts) become Refs; they are the call's dependencies."""

    def ref(future: Future[Any]) -> Ref:
        deps.append(future)
        return Ref(future.call, future.name)

    return substitute(value, Future, ref)
