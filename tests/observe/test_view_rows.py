"""The views' fast paths give what the plain ones gave: job rows built in bulk from the job
table's arrays and the param space, and local times formatted with a cached zone."""

from __future__ import annotations

import os
import time
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.core.states import TaskState
from corral.core.supervision import Supervision
from corral.observe.views import iso, job_page
from corral.spec.model import Process, Task
from corral.spec.params import ParamSpace

TASK = Task(name="t", processes=(Process(name="main", argv=("true",)),))


def _plain_rows(sup: Supervision, jobs: list[int]) -> list[dict[str, object]]:
    """job_page's rows as they were built before, one summary and one params_of per job."""
    rows = []
    for job in jobs:
        s = sup.summary(job)
        rows.append(
            {
                "job": s.job,
                "state": s.state.value,
                "attempts": s.attempt + 1 if s.state is not TaskState.PENDING or s.attempt else 0,
                "exit_code": s.exit_code,
                "params": sup.params_of(s.job),
            }
        )
    return rows


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_job_rows_in_bulk_equal_rows_job_by_job(data: st.DataObject) -> None:
    a = data.draw(st.integers(1, 4))
    b = data.draw(st.integers(1, 5))
    space = ParamSpace({"a": range(a), "b": tuple("xyzuv"[:b])})
    space.add([{"added": i} for i in range(data.draw(st.integers(0, 3)))])
    sup = Supervision(
        "ensemble",
        "e",
        lambda _job: TASK,
        len(space),
        params_of=lambda job: dict(space[job]),
        params_rows=space.rows,
    )
    states = list(TaskState)
    for job in range(sup.total):
        sup.states[job] = data.draw(st.integers(0, len(states) - 1))
        sup.attempts[job] = data.draw(st.integers(0, 3))
        code = data.draw(st.none() | st.integers(-9, 255))
        if code is not None:
            sup.exit_codes[job] = code
        if states[sup.states[job]] in (TaskState.ACTIVE, TaskState.SUBMITTED):
            sup.live.add(job)
    wanted = data.draw(st.none() | st.sampled_from(["running", *(s.value.lower() for s in states)]))
    offset = data.draw(st.integers(0, sup.total + 1))
    limit = data.draw(st.none() | st.integers(0, sup.total + 1))
    matching, rows = job_page(sup, wanted, offset, limit)
    if wanted is None:
        every = list(range(sup.total))
    elif wanted == "running":
        every = sorted(sup.live)
    else:
        every = [j for j in range(sup.total) if sup.job_state(j) is TaskState(wanted.upper())]
    assert matching == len(every)
    end = None if limit is None else offset + limit
    assert rows == _plain_rows(sup, every[offset:end])


ZONES = ["UTC", "Europe/Paris", "America/St_Johns", "Asia/Kolkata", "Australia/Lord_Howe", "Africa/Monrovia"]


@given(st.lists(st.floats(-2e9, 4e9, allow_nan=False) | st.integers(0, 2**31).map(lambda s: s + 0.9995)))
def test_iso_is_datetimes_local_isoformat(stamps: list[float]) -> None:
    """Across DST changes, half-hour and odd historical offsets, and the rounding of the
    microseconds at a second's edge."""
    before = os.environ.get("TZ")
    try:
        for zone in ZONES:
            os.environ["TZ"] = zone
            time.tzset()
            for at in stamps:
                assert iso(at) == datetime.fromtimestamp(at).astimezone().isoformat(timespec="milliseconds")
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()
    assert iso(None) is None
