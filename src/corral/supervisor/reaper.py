"""The reaper: the parent of every run, so that exit statuses outlive the supervisor.

Only a process's parent can learn how it ended. If the supervisor were the parent, a
SIGKILLed supervisor would take the exit statuses of its runs with it. So the supervisor
starts one reaper (this file, run as a script by the same Python with `-S -I`: stdlib only,
no corral import, ~10 ms to start, a few MB) in its own session, and asks it to spawn every
run. The reaper:

- receives on fd 3 frames of a 4-byte little-endian length and a `marshal` payload: first
  the environment runs start from (the supervisor's), then spawn requests
  `(job, process, run, argv, env, cwd, stdout, stderr)` (`env`: what the run adds to that
  environment; `stdout`/`stderr`: files to append to, or None for the console), `("withdraw",
  job, process, run, signal)` (a run killed before its pid came back: the call zygote may
  hold it unstarted), `("hangup",)` when the terminal went away (console runs: /dev/null);
- creates `cwd` if needed, changes to it and `posix_spawn`s the command in a session
  of its own with default signal dispositions (so the run's pid is its process group, and
  SIGPIPE is not left ignored as Python leaves it), then changes back to `/`;
- appends one line per spawn and per exit to the ledger (`ROOT/ID/reaper.log`), in one
  write per batch and BEFORE telling the supervisor:
      S <job> <process> <run> <pid> <start ticks> <reaper pid> <time>
      F <job> <process> <run> <error> <time>            (the spawn itself failed)
      E <job> <process> <run> <pid> <status> <time>     (status < 0: by that signal; pid 0: withdrawn)
      R <reaper pid> <start ticks> <time>   (written by the supervisor that started it)
      X <reaper pid> <time>   (its request pipe closed: nothing it was asked for is left to start)
- sends the same events to the supervisor on fd 4, as frames like the requests.

When the supervisor dies, the reaper keeps waiting for its runs and writing their statuses;
a new supervisor re-attaches to the runs (pidfd) and reads their ends from the ledger. The
reaper exits when the request pipe is closed (or its supervisor is gone) and no run of its
own is left. It ignores the terminal's signals and TERM: it holds nothing a user would want
to stop, and killing it early would lose the statuses it exists to keep.

The ledger is not fsync'd: it must survive the supervisor, not the machine (after a power
loss every run is gone anyway, and recovery marks them LOST). Lines are appended under a
shared flock; a supervisor rewriting the ledger (ledger.py) holds it exclusively and renames
a new file over it, which the reaper then opens (`locked`).
"""

from __future__ import annotations

import _signal  # the C module: `signal` would import enum, ~5 ms of start-up
import fcntl
import marshal
import os
import select
import sys
import time

# no `typing` import: it would cost the reaper ~10 ms of start-up, and the first run waits for it
TYPE_CHECKING = False  # mypy takes it as true
if TYPE_CHECKING:
    from types import ModuleType

LENGTH = 4
# signals a run must not inherit as ignored or handled (posix_spawn resets them to default)
_S = _signal
RESET = (_S.SIGHUP, _S.SIGINT, _S.SIGQUIT, _S.SIGTERM, _S.SIGPIPE, _S.SIGXFSZ, _S.SIGCHLD)
# O_NOFOLLOW: a log file planted as a symlink must not get a run's output appended to its
# target (the supervisor made the logs directory a real one of ours: see safefs.py)
_CLEAN = "\0clean"  # environment.CLEAN (no corral import here)
_KEPT = ("PATH", "HOME")
_OUT = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW


def frame(payload: tuple | dict) -> bytes:  # type: ignore[type-arg]
    data = marshal.dumps(payload)
    return len(data).to_bytes(LENGTH, "little") + data


def unframe(buf: bytearray) -> list:  # type: ignore[type-arg]  # tuples and the first dict
    """Decode the complete frames at the start of `buf` and remove them from it."""
    out = []
    pos, end = 0, len(buf)
    while end - pos >= LENGTH:
        size = int.from_bytes(buf[pos : pos + LENGTH], "little")
        if end - pos - LENGTH < size:
            break
        out.append(marshal.loads(buf[pos + LENGTH : pos + LENGTH + size]))
        pos += LENGTH + size
    del buf[:pos]
    return out


HZ = os.sysconf("SC_CLK_TCK")


def ticks_of(before: int, after: int) -> int | None:
    """A process's start time in clock ticks (field 22 of /proc/PID/stat: its CLOCK_BOOTTIME at
    fork, in 1/HZ s), known without reading /proc when the spawn began and returned (boot
    time in ns) within one tick, which is nearly always. Reading /proc/PID/stat right after a
    spawn waits for the child's exec to finish: ~0.3 ms on a busy machine, per run."""
    first, last = before * HZ // 1_000_000_000, after * HZ // 1_000_000_000
    return first if first == last else None


def start_ticks(pid: int) -> int:
    """Field 22 of /proc/PID/stat (0 if it cannot be read): with the pid, the run's identity."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    return int(data[data.rindex(b")") + 2 :].split()[19])


def _which(name: str, path: str) -> str:
    """The program a bare name means under the run's own PATH (as a shell would find it)."""
    if "/" in name:
        return name
    for folder in path.split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    raise FileNotFoundError(2, "command not found", name)


def users() -> ModuleType:
    """reaper_user.py (switching users): loaded only by a root reaper asked to run as one."""
    if __package__:
        from corral.supervisor import reaper_user
    else:  # run as a script; under -I our directory is not on sys.path (last: shadows nothing)
        sys.path.append(os.path.dirname(os.path.abspath(__file__)))
        import reaper_user  # type: ignore[no-redef]
    return reaper_user


class Reaper:
    def __init__(self, ledger: str, console: tuple[int, int] | None) -> None:
        # the supervisor's environment, sent as the first frame: not os.environ, which Python's
        # own start-up may have changed (locale coercion adds LC_CTYPE under -I)
        self.base: dict[str, str] | None = None
        self.path = os.defpath
        # files are as private as the task directory: 0600, or 0640 if it is group-readable
        shared = os.stat(os.path.dirname(ledger)).st_mode & 0o050 == 0o050
        self.mode = 0o640 if shared else 0o600
        self.task_prefix = os.path.dirname(ledger) + "/"  # a job's directory under it: private
        self.dir_mode = 0o750 if shared else 0o700
        self.path_of_ledger = ledger
        self.ledger = os.open(ledger, _OUT | os.O_CLOEXEC, self.mode)
        self.console = console
        self.me = str(os.getpid())
        self.runs: dict[int, tuple[int, str, int]] = {}  # pid -> (job, process, run)
        self.out = bytearray()  # events not yet written to the supervisor
        self.lines: list[str] = []  # ledger lines of this turn
        self.events: list[bytes] = []
        self.supervisor = True  # False once the event pipe is broken

    def spawn(self, req: tuple) -> None:  # type: ignore[type-arg]
        job, process, run, argv, env, cwd, stdout, stderr = req[:8]
        user = req[8] if len(req) > 8 else None
        now = time.time()
        try:
            ident = users().identity(user) if user else None
            if ident is not None and ident[1] == os.geteuid():
                ident = None  # ourselves (a user's own supervisor): nothing to switch
            self.enter(cwd, ident)
            actions: list[tuple] = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)]  # type: ignore[type-arg]
            for fd, dest in ((1, stdout), (2, stderr)):
                if dest is None:  # the console: the supervisor's own stream, if it gave us one
                    if self.console is not None:
                        actions.append((os.POSIX_SPAWN_DUP2, self.console[fd - 1], fd))
                    else:
                        actions.append((os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_WRONLY, 0))
                else:
                    actions.append((os.POSIX_SPAWN_OPEN, fd, dest, _OUT, self.mode))
            full = self.environment(env, ident)
            program = _which(argv[0], full.get("PATH", self.path))
            before = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
            if ident is None:
                pid = os.posix_spawn(program, argv, full, file_actions=actions, setsid=True, setsigdef=RESET)
            else:
                pid = users().spawn_as(ident, program, argv, full, actions, self.mode, RESET)
            after = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        except Exception as exc:  # any failure to start is this run's, not the reaper's
            os.chdir("/")
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            reason = f"cannot start {argv[0]!r}: {detail}"
            if stderr:  # say it where the user will look: the run's stderr
                try:
                    fd = os.open(stderr, _OUT | os.O_CLOEXEC, self.mode)
                    os.write(fd, f"corral: {reason}\n".encode())
                    os.close(fd)
                except OSError:
                    pass
            self.lines.append(f"F\t{job}\t{process}\t{run}\t{reason.replace(chr(9), ' ')}\t{now:.6f}\n")
            self.events.append(frame(("F", job, process, run, reason, now)))
            return
        os.chdir("/")  # hold no run's directory (or its filesystem) busy
        ticks = ticks_of(before, after)
        if ticks is None:
            ticks = start_ticks(pid)
        self.runs[pid] = (job, process, run)
        self.lines.append(f"S\t{job}\t{process}\t{run}\t{pid}\t{ticks}\t{self.me}\t{now:.6f}\n")
        self.events.append(frame(("S", job, process, run, pid, ticks, now)))

    def enter(self, cwd: str, ident: tuple | None) -> None:  # type: ignore[type-arg]
        """Create the run's directory if needed and change to it. A directory of the task's
        gets the task's privacy, and belongs to the run's user if it has one: the task
        directory above it stays root's and 0700, the run reaches its sandbox as its working
        directory (entered here, as root) and its logs through the descriptors it inherits."""
        ours = cwd.startswith(self.task_prefix)
        mode = self.dir_mode if ours else 0o777  # a sandbox of the user's own gets the umask's
        make_workdir(cwd, mode)
        if ident is not None and ours:
            os.chown(cwd, ident[1], ident[2], follow_symlinks=False)
        os.chdir(cwd)

    def environment(self, env: dict, ident: tuple | None) -> dict:  # type: ignore[type-arg]
        """The run's whole environment: ours plus the request's (env_clean: PATH and HOME of
        ours only); a run as another user gets that user's HOME, USER and LOGNAME."""
        assert self.base is not None
        full = self.base
        if env:
            if _CLEAN in env:  # env_clean: PATH and HOME of ours, the rest from the request
                full = {k: self.base[k] for k in _KEPT if k in self.base}
                full.update(env)
                del full[_CLEAN]
            else:
                full = dict(self.base)
                full.update(env)
        if ident is not None:
            full = dict(full)
            full["HOME"] = ident[3]
            full["USER"] = full["LOGNAME"] = ident[0]
        return full

    def reap(self) -> None:
        while self.runs:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.ended(pid, status)

    def ended(self, pid: int, status: int) -> None:
        key = self.runs.pop(pid, None)
        if key is not None:
            code = os.waitstatus_to_exitcode(status)
            now = time.time()
            job, process, run = key
            self.lines.append(f"E\t{job}\t{process}\t{run}\t{pid}\t{code}\t{now:.6f}\n")
            self.events.append(frame(("E", job, process, run, pid, code, now)))

    def withdraw(self, key: tuple, sig: int) -> None:  # type: ignore[type-arg]
        """The call zygote's: drop a run it holds unstarted (here each started at once)."""

    def requests_closed(self) -> None:
        """The call zygote's: start every run it holds, before the X line."""

    def publish(self) -> None:
        """The ledger first (it is what survives), then the supervisor."""
        if self.lines:
            data = "".join(self.lines).encode()
            self.lines.clear()
            try:
                self.locked()
                try:
                    while data:
                        data = data[os.write(self.ledger, data) :]
                finally:
                    fcntl.flock(self.ledger, fcntl.LOCK_UN)
            except OSError:
                # a full disk: keep the rest for the next turn and tell the supervisor anyway (a
                # line another reaper's write cuts in two is skipped by the ledger's reader)
                self.lines.append(data.decode(errors="replace"))
        if self.events:
            if self.supervisor:
                self.out += b"".join(self.events)
            self.events.clear()
        self.flush()

    def locked(self) -> None:
        """Hold the ledger's shared lock, on the file its path names: a supervisor that
        rewrote it (supervisor/ledger.py, under the exclusive lock) renamed a new one over it."""
        fcntl.flock(self.ledger, fcntl.LOCK_SH)
        while os.fstat(self.ledger).st_nlink == 0:
            try:
                fd = os.open(self.path_of_ledger, _OUT | os.O_CLOEXEC, self.mode)
            except OSError:  # its directory is gone: keep writing where we were
                return
            os.close(self.ledger)
            self.ledger = fd
            fcntl.flock(fd, fcntl.LOCK_SH)

    def flush(self) -> None:
        if not self.out or not self.supervisor:
            return
        try:
            sent = os.write(4, self.out)
        except BlockingIOError:
            return
        except OSError:  # EPIPE: the supervisor is gone; the ledger has it all
            self.supervisor = False
            self.out.clear()
            return
        del self.out[:sent]


def _take(reaper: Reaper, req: tuple | dict) -> None:  # type: ignore[type-arg]
    """Act on one request: the base environment (the first), a hangup, or a spawn."""
    if reaper.base is None:
        assert isinstance(req, dict)
        reaper.base = req
        reaper.path = req.get("PATH", os.defpath)
    elif req[0] == "withdraw":  # a run killed before its pid came back (see withdraw)
        reaper.withdraw(req[1:4], req[4])
    elif req == ("hangup",):  # the terminal is gone: let go of it
        if reaper.console is not None:
            for stream in reaper.console:
                os.close(stream)
            reaper.console = None
    else:
        reaper.spawn(req)  # type: ignore[arg-type]


def _start(argv: list[str]) -> tuple[str, tuple[int, int] | None, int]:
    """Our descriptors and signals set up: (ledger, console, the read end of the wake pipe)."""
    console = (5, 6) if len(argv) > 2 and argv[2] == "console" else None
    # descriptors our starter left open for its children are not for the runs
    os.closerange(7 if console else 5, 1 << 16)
    for fd in (3, 4, *(console or ())):
        os.set_inheritable(fd, False)  # the runs must not hold our pipes
    os.set_blocking(4, False)
    for sig in (_S.SIGINT, _S.SIGHUP, _S.SIGQUIT, _S.SIGTERM, _S.SIGPIPE):
        _signal.signal(sig, _signal.SIG_IGN)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    _signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    _signal.signal(_signal.SIGCHLD, lambda *_: None)
    return argv[1], console, wake_r


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def main(argv: list[str], make=Reaper) -> int:  # type: ignore[no-untyped-def]
    """`make`: the Reaper class (the executor's call zygote passes a subclass that forks)."""
    ledger, console, wake_r = _start(argv)
    reaper = make(ledger, console)
    poll = select.poll()
    poll.register(3, select.POLLIN)
    poll.register(wake_r, select.POLLIN)
    inbox = bytearray()
    requests_open = True
    writing = False
    while requests_open or reaper.runs:
        try:
            # ledger lines a full disk refused are tried again every second
            ready = poll.poll(1000 if reaper.lines else None)
        except InterruptedError:
            ready = []
        for fd, _ in ready:
            if fd == wake_r:
                _drain(wake_r)
            elif fd == 3:
                data = os.read(3, 1 << 20)
                if not data:
                    # every request sent has been acted on: say so, for a new supervisor that
                    # must know whether a run launched by its predecessor will still start
                    requests_open = False
                    poll.unregister(3)
                    reaper.requests_closed()
                    reaper.lines.append(f"X\t{reaper.me}\t{time.time():.6f}\n")
                    continue
                inbox += data
                for req in unframe(inbox):
                    _take(reaper, req)
        reaper.reap()
        reaper.publish()
        if reaper.out and reaper.supervisor and not writing:
            poll.register(4, select.POLLOUT)
            writing = True
        elif writing and not (reaper.out and reaper.supervisor):
            poll.unregister(4)
            writing = False
    reaper.publish()
    return 0


def make_workdir(cwd: str, mode: int) -> None:
    """A run's working directory: one mkdir (a new job's, whose parent exists), else mkdir -p."""
    try:
        os.mkdir(cwd, mode)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(cwd, mode, exist_ok=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
