"""The interface between the supervisor's loop and where jobs run: the `Backend` Protocol.

Every journal has exactly one backend and the engine drives each the same way (engine.py):
this host (`LocalBackend`, supervisor/local.py), the steps of a Slurm allocation
(backends/slurm_steps.py) and Slurm jobs (backends/slurm.py). A backend observes and carries
out; it never decides: what an exit or a batch state means is core's (core/task.py,
core/outcome.py), and it records what it observed through the engine.

Jobs handed to a batch system (the core admits them as SUBMITTED when `Supervision.remote`):

- `submit(jobs)`: the jobs admitted this turn (records Submitted before relying on ids);
- `cancel(jobs)`: carry out a recorded kill;
- `submits_in_commit`: True if `submit` only records (it sends after the commit): then it
  is called before the turn's commit instead of after;
- `due()`: when the backend wants its next `poll(now)` (None: nothing to watch);
- `poll(now)`: observe what changed (a batch system: one query per interval; this host: the
  children that ended, log sizes) and record it; called at the start of every turn;
- `reattach()`: once after a recovery, watch what is still live again; returns how many;
- `close()`: once the supervision ended: release what the backend holds (pilot workers).

Runs on this host (core records a run LAUNCHING, a Signal, a pause...). A batch system starts
no run here; the defaults below do nothing, so a backend that subclasses `Backend` explicitly
implements only the five methods above:

- `start(watch)` / `stop()`: the loop begins (descriptors to watch: `watch(fd, callback)`,
  None to stop) / ends;
- `launch(run)`, `signal(run, sig)`, `ended(job, signalled)`, then `flush()` once per turn;
- `busy`: a run started here has not been reaped yet (the supervision waits for it);
- `hangup()`: the terminal went away; `finish()`: the supervision is over (nothing may stay);
- `lose(runs)`: give up now (kill these live runs' trees, sweep, stop waiting for anything);
- `recovered()`: (exit statuses recovered, runs found lost) by the last `reattach`.

Which backend a journal gets is the spec's `backend`; the commands pass the supervisor a map
of names to `BackendKind` (corral/backends/kinds.py) so that the supervisor imports no backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from corral.core.records import Opened
    from corral.core.supervision import Supervision
    from corral.supervisor.engine import Engine
    from corral.supervisor.layout import Layout

RunKey = tuple[int, str, int]  # (job, process, run)
Watch = Callable[[int, Callable[[], None] | None], None]


@runtime_checkable
class Backend(Protocol):
    # -- jobs handed to a batch system ---------------------------------------------------------

    def submit(self, jobs: list[int]) -> None: ...

    def due(self) -> float | None: ...

    def poll(self, now: float) -> None: ...

    def cancel(self, jobs: list[int]) -> None: ...

    def reattach(self) -> int: ...

    @property
    def submits_in_commit(self) -> bool:
        """True: `submit` only records what it hands over and acts once that is durable
        (`engine.after_commit`): the engine calls it before the turn's commit, so the
        admission and the hand-over cost one fdatasync (pilot workers)."""
        return False

    def close(self) -> None:
        """Once the supervision ended (terminal): release what the backend holds (pilot
        workers are cancelled). Not called when the supervisor stops otherwise (a crash, a
        detach): a recovery re-attaches."""
        return None

    # -- runs on this host (defaults: a backend that starts none) ------------------------------

    def start(self, watch: Watch) -> None:
        """The loop begins; descriptors the backend wants watched go through `watch`."""
        return None

    def stop(self) -> None:
        """The loop ends (normally, or on an error)."""
        return None

    @property
    def busy(self) -> bool:
        """A run started here has not been reaped yet."""
        return False

    def launch(self, run: RunKey) -> None:
        """Start a run the core recorded LAUNCHING."""
        return None

    def signal(self, run: RunKey, sig: int) -> None:
        """Send `sig` to a run's whole tree."""
        return None

    def ended(self, job: int, signalled: bool) -> None:
        """A job ended (`signalled`: one of its runs was): what it left behind may be killed."""
        return None

    def flush(self) -> None:
        """The turn's effects are all given: carry them out."""
        return None

    def hangup(self) -> None:
        """The terminal went away."""
        return None

    def finish(self) -> None:
        """The supervision is over: nothing of it may stay behind."""
        return None

    def lose(self, runs: Mapping[RunKey, tuple[int, int]], jobs: list[int]) -> None:
        """Give up now: kill `runs` (key -> (pid, start ticks)), sweep `jobs`, wait for nothing."""
        return None

    def recovered(self) -> tuple[int, int]:
        """(exit statuses recovered, runs lost) by the last `reattach`."""
        return 0, 0


class BackendKind(Protocol):
    """How a journal whose spec names this backend gets it."""

    def check(self, layout: Layout, opened: Opened, sup: Supervision, file: str | None) -> None:
        """Before anything is recorded: refuse what cannot run (a UserError of one line)."""

    def build(self, engine: Engine, opened: Opened, *, new: bool) -> Backend:
        """The backend of `engine`'s journal (`new`: nothing was submitted before)."""
        ...


BackendKinds = Mapping[str, BackendKind]


def backend_name(opened: Opened) -> str:
    """The backend a journal's spec names ("local" unless said)."""
    name = opened.spec.get("backend")
    return name if isinstance(name, str) else "local"
