"""What `corral read` prints for a record: the journal's words, never a Python repr."""

from __future__ import annotations

from corral.cli.history import describe
from corral.core.records import Action, Request, Signal, SignalCause


def test_a_request_shows_its_action_as_the_journal_writes_it() -> None:
    line = describe(Request(Action.PAUSE, 1.0, job=0, process="a"))
    assert line == "request action='pause', job=0, process='a', grace=None"
    assert "Action" not in describe(Request(Action.KILL, 1.0, grace=2.0))


def test_a_signal_names_its_cause_by_value() -> None:
    line = describe(Signal(0, "a", 0, 15, 1.0, SignalCause.KILL))
    assert line == "job 0 a[0] <- SIGTERM (kill)"


def test_a_tasks_history_names_no_job() -> None:
    from corral.cli.history import describe_in_task
    from corral.core.records import RunUpdate, Transition

    assert describe_in_task(RunUpdate(0, "a", 1, "FAILED", 1.0, exit_code=1)) == "a[1] -> FAILED (exit 1)"
    assert describe_in_task(Transition(0, "ACTIVE", 1.0)) == "task -> ACTIVE"
    assert describe_in_task(Signal(0, "a", 0, 15, 1.0, SignalCause.KILL)) == "a[0] <- SIGTERM (kill)"
