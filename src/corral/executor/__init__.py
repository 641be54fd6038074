"""corral.Executor: Python callables as durable, isolated calls, on this host or on Slurm.

Design (the README's "Python API" section has the user's view). The parts: executor.py (the
concurrent.futures API), future.py (a call's Future, Options), driver.py (what an executor's
views share: the connection, outcomes, submission, pausing inside a call), client.py and
daemon.py (the supervisor, reached and started), book.py (the supervisor's side), zygote.py,
warm.py and runner.py (a call's process), payload.py (payloads and results), waiting.py.

- An executor is an **ensemble** in corral's journal (ROOT/ID), supervised by an ordinary
  corral supervisor started **detached** by the first driver (like `corral run --detach`), so
  calls outlive the driver. Each call is one job whose params row names the call (its identity
  hash, function name, retries, timeout, resources); `corral status ID --jobs`, `read`,
  `tail ID JOB` and `kill ID` work as for any ensemble.
- The driver talks to the supervisor over its **control socket**: `calls` journals calls
  (answered once the JobsAdded record is fsync'd, or with the stored end of a call it already
  has), `watch` keeps a connection on which the supervisor pushes final job ends (after they
  are durable), `yield` parks a call that waits for sub-calls, `requeue` stops and re-queues
  running calls. The supervisor's side is book.py, installed through small extension points of
  the engine (extra control ops, extra descriptors, a helper instead of the reaper).
- **Isolation without a Python start-up per call**: locally the supervisor's reaper is the
  call zygote (zygote.py), a reaper that has imported cloudpickle and the runner and forks
  each call (a session of its own, the run's log files as stdout/stderr), from spares forked
  ahead of time (one per running call); it imports the calls' modules once (warm.py) unless
  Executor(warm=False). It writes the reaper's ledger lines, so exit statuses outlive the
  supervisor as for shell runs. On Slurm,
  each job runs `python -m corral.executor.runner` on the node (arrays, shared file system).
- **Payloads and results** are files under ROOT/ID/calls/ (payload.py): `H.in` written by the
  submitter before the call is journaled, `H.out` written by the call (a value, an exception
  with its traceback text, or why the result could not be pickled).
- **Dependencies**: futures among the arguments (also in lists, tuples, dicts) become
  references; the call is journaled when they have succeeded (so a call waiting for its
  dependencies is held by its driver, not journaled), reads their stored results in its own
  process, and fails with DependencyFailed without running if one failed.
- **Nested calls**: inside a call, Executor.current() (or an unpickled executor) submits to the
  same supervisor. result() on an unfinished future asks `yield`: the call is recorded PAUSED
  (a `yield` request in the journal), stopped with SIGSTOP, its slot given to the next call,
  and continued (SIGCONT) with the answer once what it waits for is final.
  concurrent.futures.wait and as_completed do the same (waiting.py: the futures' waiters).
  Waiting for itself or in a cycle is refused with CallError.
- **Identity**: `key=` if given, else MODULE.QUALNAME + SHA-256 of the pickled arguments. A
  call whose identity has a job already is not journaled again: a restarted driver gets
  stored results (read straight from H.out when it says "ok") and waits for running calls.
- **Retries** are per call: a failed call with retries left is journaled again as a new job.
  **Timeouts** are the job's run timeout (TERM, then KILL; paused time excluded).
- **Shutdown**: shutdown(cancel_futures=True) and Ctrl-C (KeyboardInterrupt through the with
  block) drain the ensemble and kill its running calls; each is noted "re-queued" and
  journaled again as a pending job, which the next executor with this id runs.
- The supervisor ends the ensemble (releases its hold) when no driver is connected and nothing
  runs or waits; a new driver reopens it (a `reopen` request), recovering it first if its
  supervisor died.
"""

from __future__ import annotations

from typing import Any

from corral.executor.errors import CallError, CallFailed, DependencyFailed, RemoteTraceback


def __getattr__(name: str) -> Any:
    # lazy: the call zygote imports corral.executor.runner and must stay small (it is forked
    # for every call: fewer pages, cheaper forks)
    if name in ("Executor", "Future"):
        from corral.executor import executor

        return getattr(executor, name)
    raise AttributeError(f"module 'corral.executor' has no attribute {name!r}")


__all__ = ["CallError", "CallFailed", "DependencyFailed", "Executor", "Future", "RemoteTraceback"]
