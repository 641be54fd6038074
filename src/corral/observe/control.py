"""Control actions from the API: to a live supervisor through its control socket, or, when
nobody supervises the task, through `corral kill/lose/pause/resume` themselves.

The second path runs the CLI command as a child process rather than importing it (observe sits
below cli): the code that recovers a dead supervisor's task, records the request and carries
it out exists once. A kill with no supervisor supervises the task to its end (finalizers run),
so it is started in the background and answered 202 once it is under way.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from corral.observe import liveness
from corral.supervisor import control
from corral.supervisor.layout import Layout

CLI_TIMEOUT = 60.0
KILL_SETTLE = 1.0  # a background kill that fails fails at once (lock taken, bad id)


@dataclass(frozen=True)
class Outcome:
    status: int  # HTTP status
    body: dict[str, Any]


def _refused(status: int, message: str) -> Outcome:
    return Outcome(status, {"error": message})


async def ask_supervisor(layout: Layout, message: dict[str, Any]) -> Outcome | None:
    """The live supervisor's answer, or None when no supervisor holds the journal."""
    # a fresh reading, not the list's half-second cache: control acts on the answer
    if not liveness.supervised(layout.journal, liveness.held_flocks()):
        return None
    try:
        answer = await asyncio.to_thread(control.request, layout.control, message)
    except OSError as exc:
        return _refused(503, f"{layout.id}: the supervisor does not answer ({exc})")
    except ValueError:
        return _refused(502, f"{layout.id}: the supervisor sent a malformed answer")
    if not answer.get("ok"):
        return _refused(409, f"{layout.id}: {answer.get('error', 'refused')}")
    return Outcome(200, answer)


def _cli(layout: Layout, *args: str) -> list[str]:
    return [sys.executable, "-m", "corral", "--root", str(layout.root), *args]


async def run_cli(layout: Layout, *args: str) -> Outcome:
    """Run a corral command that ends quickly (lose, pause, resume) and report how it went."""
    child = await asyncio.create_subprocess_exec(
        *_cli(layout, *args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(child.communicate(), CLI_TIMEOUT)
    except TimeoutError:
        child.kill()
        await child.wait()
        return _refused(504, f"{layout.id}: 'corral {args[0]}' did not finish in {CLI_TIMEOUT:.0f} s")
    if child.returncode != 0:
        message = err.decode(errors="replace").strip().removeprefix("corral: ") or "failed"
        return _refused(409, message)
    return Outcome(200, {"ok": True, "detail": out.decode(errors="replace").strip()})


async def start_kill(layout: Layout, args: list[str]) -> Outcome:
    """`corral kill` in the background: it recovers the task, kills it and supervises to the end."""
    with tempfile.TemporaryFile() as err:
        child = await asyncio.create_subprocess_exec(
            *_cli(layout, "kill", layout.id, *args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,  # outlives the server, like a detached supervisor
        )
        try:
            await asyncio.wait_for(child.wait(), KILL_SETTLE)
        except TimeoutError:
            asyncio.get_running_loop().create_task(child.wait())  # reap it when it ends
            return Outcome(202, {"ok": True, "detail": f"no live supervisor: pid {child.pid} kills it"})
        err.seek(0)
        text = err.read().decode(errors="replace").strip().removeprefix("corral: ")
    if child.returncode != 0:
        return _refused(409, text or "kill failed")
    return Outcome(200, {"ok": True, "detail": text or "killed"})


def kill_args(grace: float | None, job: int | None) -> list[str]:
    args = []
    if grace is not None:
        args += ["--grace", repr(grace)]
    if job is not None:
        args += ["--job", str(job)]
    return args
