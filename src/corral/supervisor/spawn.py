"""Starting a run: one posix_spawn of a tiny /bin/sh wrapper, in its own session.

Why a shell wrapper: the exit status must outlive the supervisor (it may be SIGKILLed while the
run goes on), and only a process's parent can wait for it. A resident Python coordinator per run
(as Thermos had) costs megabytes and milliseconds each; /bin/sh costs ~1 MB of shared pages and
~10 % of spawn throughput. The wrapper:

- changes to the run's directory (posix_spawn has no chdir before Python 3.13);
- traps HUP/INT/QUIT/TERM with a no-op handler, so a TERM sent to the whole process group ends
  the run but not the wrapper; handlers (unlike ignored signals) are reset on exec, so the run
  itself sees the default dispositions;
- runs the command in the foreground, then writes its status to the `exit` file and exits with
  it. A run killed by signal N reports 128+N, the shell's convention.

Only SIGKILL of the wrapper itself loses the status file; corral sends KILL only after TERM and
the grace period, and records that it did, so such a run is KILLED, not LOST.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

WRAPPER = (
    'trap : HUP INT QUIT TERM\ncd -- "$1" || exit 126\ns=$2\nshift 2\n"$@"\nc=$?\necho $c >"$s"\nexit $c\n'
)
SHELL = "/bin/sh"
_DEVNULL = os.devnull
_OUT_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND


def command_argv(cmd: str | None, argv: Sequence[str] | None) -> list[str]:
    if argv is not None:
        return list(argv)
    assert cmd is not None
    return [SHELL, "-c", cmd]


def spawn(
    argv: Sequence[str],
    *,
    cwd: str,
    env: Mapping[str, str],
    stdout: str | None,
    stderr: str | None,
    status: str,
) -> int:
    """Start the wrapper around `argv`; return its pid (also its process group and session)."""
    actions: list[tuple[int, int, str, int, int] | tuple[int, int]] = [
        (os.POSIX_SPAWN_OPEN, 0, _DEVNULL, os.O_RDONLY, 0),
    ]
    # None means: inherit the supervisor's stream (logger destination "console")
    if stdout is not None:
        actions.append((os.POSIX_SPAWN_OPEN, 1, stdout, _OUT_FLAGS, 0o644))
    if stderr is not None:
        actions.append((os.POSIX_SPAWN_OPEN, 2, stderr, _OUT_FLAGS, 0o644))
    full = [SHELL, "-c", WRAPPER, "corral-run", cwd, status, *argv]
    return os.posix_spawn(SHELL, full, env, file_actions=actions, setsid=True)


def read_status(path: str) -> int | None:
    """The exit status the wrapper wrote, or None if it never did."""
    try:
        with open(path, "rb") as f:
            text = f.read().strip()
    except OSError:
        return None
    try:
        return int(text)
    except ValueError:
        return None
