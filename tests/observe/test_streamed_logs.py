"""The log range API serves a job's output that a pilot worker streamed to the launcher (one
file pair per worker under ROOT/ID/pilot/WORKER/) when the job has no log file (issue 14).
The launcher's writer side is not wired yet: the test writes the pair with the same writer the
launcher will use, into a real finished ensemble whose per-run log files it removed."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from observe_helpers import AUTH, TOKEN, Corral, app_client, cleanup

from corral.journal.streamlog import Stream, StreamKey, StreamLogWriter, data_path
from corral.observe.app import create_app
from corral.supervisor.streamed import output_base


@pytest.fixture
def streamed(tmp_path: Path) -> Any:
    root = tmp_path / "root"
    root.mkdir()
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: st\njob: {cmd: 'true'}\nparams: {i: {range: [0, 3]}}\n")
    Corral(root)("run", str(spec), "--id", "st", "-q", check=True)
    shutil.rmtree(root / "st" / "logs")
    for worker, attempt, text in (("301_0", 0, b"lost attempt\n"), ("302_0", 1, b"0123456789\n")):
        base = output_base(root / "st", worker)
        base.parent.mkdir(parents=True)
        with StreamLogWriter(base) as w:
            w.append(StreamKey(1, attempt, "main", 0, Stream.STDOUT), text)
            w.append(StreamKey(1, attempt, "main", 0, Stream.STDERR), b"warn\n")
    with app_client(create_app(root, TOKEN)) as client:
        yield root, client
    cleanup(root)


def get(client: Any, **params: Any) -> Any:
    return client.get("/api/v1/tasks/st/logs", params=params, headers=AUTH)


def test_a_streamed_log_is_served_by_byte_range(streamed: Any) -> None:
    _, client = streamed
    whole = get(client, job=1)
    assert whole.status_code == 200, whole.text
    body = whole.json()
    assert body["data"] == "0123456789\n"  # the newest attempt's
    assert (body["process"], body["run"], body["size"], body["live"]) == ("main", 0, 11, False)
    part = get(client, job=1, offset=3, limit=4).json()
    assert (part["data"], part["offset"], part["next"]) == ("3456", 3, 7)
    assert get(client, job=1, limit=3).json()["data"] == "89\n"  # no offset: the last bytes
    assert get(client, job=1, stream="stderr").json()["data"] == "warn\n"
    assert get(client, job=1, process="other").status_code == 404
    assert get(client, job=0).status_code == 404
    assert get(client, job=1, rotated=1).status_code == 404


def test_a_symlinked_output_file_is_refused(streamed: Any, tmp_path: Path) -> None:
    root, client = streamed
    secret = tmp_path / "secret"
    secret.write_text("0123456789 secret\n")
    planted = data_path(output_base(root / "st", "302_0"))
    planted.unlink()
    planted.symlink_to(secret)
    refused = get(client, job=1)
    assert refused.status_code == 403 and "secret" not in refused.text
