"""`logger: {destination: both}` through the real CLI: the run's output in its files and on the
supervisor's console, prefixed; a console that is slow or gone never holds up or kills the
supervisor, and the files stay complete."""

from __future__ import annotations

import os
import subprocess

SPEC = """
name: b
processes:
  - name: talk
    cmd: 'echo one; echo two >&2; echo three'
    logger: {destination: both}
  - name: quiet
    cmd: 'echo not-mirrored'
"""
FLOOD = """
name: f
processes:
  - name: flood
    cmd: 'seq 1 300000'
    logger: {destination: both}
"""


def test_both_writes_the_files_and_the_console(corral, spec_file) -> None:  # type: ignore[no-untyped-def]
    result = corral("run", str(spec_file(SPEC)), "--id", "b", check=True)
    assert [x for x in result.stdout.splitlines() if " | " in x] == ["talk[0] | one", "talk[0] | three"]
    assert "talk[0] | two" in result.stderr.splitlines()
    assert "not-mirrored" not in result.stdout + result.stderr
    logs = corral.root / "b" / "logs"
    assert (logs / "talk.0.stdout").read_text() == "one\nthree\n"
    assert (logs / "talk.0.stderr").read_text() == "two\n"


def test_a_console_nobody_reads_never_holds_up_the_supervisor(corral, spec_file) -> None:  # type: ignore[no-untyped-def]
    read, write = os.pipe()  # 64 KB of pipe; the run writes ~2 MB and nobody reads
    try:
        sup = subprocess.Popen(
            corral.argv("run", str(spec_file(FLOOD)), "--id", "f"),
            stdout=write,
            stderr=subprocess.DEVNULL,
            env=corral.env,
        )
        assert sup.wait(timeout=120) == 0
    finally:
        os.close(write)
        os.close(read)
    assert (corral.root / "f" / "logs" / "flood.0.stdout").read_text().split() == [
        str(i) for i in range(1, 300001)
    ]
    assert corral.status("f")["state"] == "SUCCESS"


def test_a_console_that_is_gone_never_kills_the_supervisor(corral, spec_file) -> None:  # type: ignore[no-untyped-def]
    read, write = os.pipe()
    os.close(read)  # whatever the supervisor writes to stdout now gets EPIPE
    try:
        sup = subprocess.Popen(
            corral.argv("run", str(spec_file(FLOOD)), "--id", "f"),
            stdout=write,
            stderr=subprocess.PIPE,
            env=corral.env,
            text=True,
        )
        _, err = sup.communicate(timeout=120)
    finally:
        os.close(write)
    assert "Traceback" not in err, err
    assert corral.status("f")["state"] == "SUCCESS"
    assert len((corral.root / "f" / "logs" / "flood.0.stdout").read_text().split()) == 300000
