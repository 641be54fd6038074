"""What a call's future raises when the call did not return a value."""

from __future__ import annotations


class CallFailed(Exception):
    """The call's process ended without a result: an exit code (os._exit, a crash), a signal
    (SIGKILL, out of memory, the timeout's SIGALRM), or corral ended the job (KILLED, LOST)."""

    def __init__(
        self, name: str, job: int, state: str, exit_code: int | None = None, signal: int | None = None
    ) -> None:
        self.name, self.job, self.state = name, job, state
        self.exit_code, self.signal = exit_code, signal
        if signal is not None:
            how = f"killed by signal {signal}"
        elif exit_code is not None:
            how = f"exited with status {exit_code}"
        else:
            how = state
        super().__init__(f"call {name} (job {job}) failed without a result: {how}")


class DependencyFailed(Exception):
    """A future given as an argument failed: this call never ran."""

    def __init__(self, name: str, dependency: str, cause: BaseException | None = None) -> None:
        self.name, self.dependency = name, dependency
        why = f": {type(cause).__name__}: {cause}" if cause is not None else ""
        super().__init__(f"call {name} did not run: its dependency {dependency} failed{why}")


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a call's process (as text)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n" + self.text


class CallError(Exception):
    """Something about the call itself: its arguments or result cannot be pickled, or it
    waits for its own result (a deadlock)."""
