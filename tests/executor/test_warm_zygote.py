"""The call zygote kept warm: the calls' modules imported once there, a spare forked ahead.

Each module here records every import of itself (a line per importing process) in a file,
so the tests count how often calls had to import it."""

from __future__ import annotations

import importlib
import os
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import corral
from corral.journal import lock_holder

MODULE = """
import os, threading
with open({log!r}, "a") as f:
    f.write(f"{{os.getpid()}}\\n")
{extra}

def ident(x):
    return x
"""


@pytest.fixture
def modules(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "mods"
    where.mkdir()
    sys.path.insert(0, str(where))
    yield where
    sys.path.remove(str(where))


def make(where: Path, name: str, extra: str = "") -> tuple[object, Path]:
    log = where / f"{name}.imports"
    (where / f"{name}.py").write_text(MODULE.format(log=str(log), extra=textwrap.dedent(extra)))
    module = importlib.import_module(name)
    return module.ident, log  # type: ignore[attr-defined]


def imports(log: Path) -> int:
    """Imports of the module by other processes than this driver."""
    return sum(1 for line in log.read_text().split() if int(line) != os.getpid())


def run_calls(root: Path, ident: str, fn: object, n: int, **options: object) -> None:
    with corral.Executor(id=ident, root=root, max_workers=1, **options) as ex:  # type: ignore[arg-type]
        for i in range(n):  # one after the other: each call forked after the last ended
            assert ex.submit(fn, i).result(timeout=120) == i  # type: ignore[arg-type]


def test_a_calls_module_is_imported_once_in_the_zygote(root: Path, modules: Path) -> None:
    fn, log = make(modules, "warm_plain")
    run_calls(root, "warm", fn, 6)
    # the first call, the probe and the zygote; the five calls after find it imported
    assert imports(log) == 3


def test_warm_false_leaves_the_zygote_alone(root: Path, modules: Path) -> None:
    fn, log = make(modules, "warm_off")
    run_calls(root, "cold", fn, 4, warm=False)
    assert imports(log) == 4  # every call imported it itself


def test_a_module_that_starts_a_thread_is_not_imported_in_the_zygote(root: Path, modules: Path) -> None:
    fn, log = make(
        modules, "warm_thread", "threading.Thread(target=threading.Event().wait, daemon=True).start()"
    )
    run_calls(root, "threaded", fn, 4)
    assert imports(log) == 4 + 1  # each call, and the probe that found a thread


def test_a_module_that_exits_on_import_outside_calls_leaves_the_zygote_alive(
    root: Path, modules: Path
) -> None:
    """Imported outside a call (no CORRAL_JOB: the probe), it kills its process: the probe
    dies, the zygote never imports it and goes on forking calls."""
    fn, log = make(
        modules,
        "warm_exit",
        f"if 'CORRAL_JOB' not in os.environ and os.getpid() != {os.getpid()}:\n    os._exit(9)",
    )
    run_calls(root, "exits", fn, 4)
    assert imports(log) == 4 + 1


def _zygote_children(root: Path, ident: str) -> list[int]:
    sup = lock_holder(root / ident / "journal")
    assert sup is not None
    for kid in Path(f"/proc/{sup}/task/{sup}/children").read_text().split():
        if b"corral.executor.zygote" in Path(f"/proc/{kid}/cmdline").read_bytes():
            return [int(x) for x in Path(f"/proc/{kid}/task/{kid}/children").read_text().split()]
    raise AssertionError("no zygote")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] != b"Z"


def test_a_killed_spare_means_an_ordinary_fork(root: Path, modules: Path) -> None:
    fn, _ = make(modules, "warm_spare")
    with corral.Executor(id="spare", root=root, max_workers=1) as ex:
        assert ex.submit(fn, 1).result(timeout=120) == 1
        assert ex.submit(fn, 2).result(timeout=120) == 2
        # no call runs: the zygote's child is the spare it forks after the last call's end
        deadline = time.monotonic() + 60
        while not (spares := _zygote_children(root, "spare")) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert spares
        for pid in spares:
            os.kill(pid, signal.SIGKILL)
        # the spare has died (a zombie or gone) before the next call: a spare killed while
        # the call is being handed to it takes that call with it, as any killed call would
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in spares) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not any(_alive(pid) for pid in spares)
        assert ex.submit(fn, 3).result(timeout=120) == 3
        assert [f.result(timeout=120) for f in [ex.submit(fn, i) for i in range(4, 8)]] == [4, 5, 6, 7]
