"""Every: the repeating check shared by the log rotator and the console mirror."""

from __future__ import annotations

import time

from corral.supervisor.every import Every


def test_asleep_until_started_then_due_one_interval_ahead() -> None:
    timer = Every(3600.0)
    assert timer.due() is None and not timer.ready()
    before = time.time()
    timer.start()
    at = timer.due()
    assert at is not None and before + 3600.0 <= at <= time.time() + 3600.0
    assert not timer.ready()  # an hour away
    timer.start()  # already armed: a second watcher does not push the check back
    assert timer.due() == at


def test_again_rearms_while_busy_and_sleeps_when_idle() -> None:
    timer = Every(0.0)
    timer.start()
    assert timer.ready()  # an interval of zero: due at once
    timer.again(True)
    assert timer.due() is not None and timer.ready()
    timer.again(False)
    assert timer.due() is None and not timer.ready()
    timer.start()
    timer.stop()
    assert timer.due() is None and not timer.ready()
