"""Running a run as another user (its `user:`), for a reaper running as root: its user's
identity, and a spawn that switches to it. Stdlib only, like reaper.py, which loads this file
only when a run names a user (reaper.users)."""

from __future__ import annotations

import _signal  # the C module, as in reaper.py
import os


def identity(user: str) -> tuple[str, int, int, str]:
    """(name, uid, gid, home) of a user: a run's `user:` (refused if there is no such user)."""
    import pwd  # a builtin module: no start-up cost for reapers that never need it

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise LookupError(f"no user {user!r} on this host") from None
    return entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir or "/"


def spawn_as(
    ident: tuple[str, int, int, str],
    program: str,
    argv: list[str],
    env: dict[str, str],
    actions: list[tuple],  # type: ignore[type-arg]  # posix_spawn's file actions
    mode: int,
    reset: tuple[int, ...],
) -> int:
    """posix_spawn cannot change users: fork, set up what the `actions` say (the same file
    actions), give the run's log files to its user (so /dev/stdout opens for it), drop to
    the user with its supplementary groups, exec. An error before the exec comes back on a
    close-on-exec pipe and is raised here, as posix_spawn would."""
    name, uid, gid, _home = ident
    read, write = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, until exec
        try:
            os.setsid()
            _signal.set_wakeup_fd(-1)
            for sig in reset:
                _signal.signal(sig, _signal.SIG_DFL)
            for action in actions:
                if action[0] == os.POSIX_SPAWN_DUP2:
                    os.dup2(action[1], action[2])
                    continue
                fd = os.open(action[2], action[3] | os.O_CLOEXEC, action[4] or mode)
                if action[2] != os.devnull:
                    os.fchown(fd, uid, gid)
                os.dup2(fd, action[1])
                os.close(fd)
            os.initgroups(name, gid)
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            os.execve(program, argv, env)
        except BaseException as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            os.write(write, detail.encode(errors="replace"))
        finally:
            os._exit(127)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 4096):
        chunks.append(chunk)
    os.close(read)
    if chunks:
        os.waitpid(pid, 0)
        raise OSError(0, b"".join(chunks).decode(errors="replace"))
    return pid
