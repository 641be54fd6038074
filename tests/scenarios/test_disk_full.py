"""A full file system under the root (a real tmpfs, filled and freed): the supervisor stops
launching, says so once, keeps its runs, retries, and carries on; or gives up in one line and
`corral recover` finishes the work. Needs root (mount); skipped otherwise."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.supervisor.control import request
from corral.supervisor.layout import Layout

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None,
    reason="needs root to mount a small tmpfs as the root directory",
)

SPEC = """
name: full
job:
  cmd: |
    echo $$ > {out}/pid.$CORRAL_JOB
    if [ "$CORRAL_JOB" = 0 ]; then f={out}/go0; else f={out}/go; fi
    while [ ! -e $f ]; do sleep 0.05; done
params:
  n: [0, 1, 2, 3]
job_limit: 2
"""


@pytest.fixture
def small_root(corral, tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    root = mnt / "root"
    root.mkdir()
    corral.root = root
    corral.env["CORRAL_ROOT"] = str(root)
    try:
        yield root
    finally:
        _kill_marked(root)
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _kill_marked(root: Path) -> None:
    needle = f"\0CORRAL_ROOT={root}\0".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if needle in b"\0" + f.read():
                        os.kill(int(entry), signal.SIGKILL)
            except OSError:
                pass


def _fill(where: Path) -> Path:
    filler = where / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def _overflow(control: str) -> None:
    """A record larger than a page: tmpfs has no room left for it even at the end of the
    journal's last page (small records would still fit there). Its answer waits for a commit
    that cannot happen, so the client gives up first."""
    with pytest.raises(OSError):
        request(control, {"op": "submit", "params": [{"n": 9, "pad": "x" * 6000}]}, timeout=2)


def _ping(control: str) -> dict:
    try:
        return request(control, {"op": "ping"}, timeout=5)
    except OSError:
        return {}


def _alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def _start(corral, spec_file, tmp_path: Path, task_id: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    out.mkdir()
    spec = spec_file(SPEC.format(out=out))
    proc = corral.start("run", str(spec), "--id", task_id, env=env)
    control = Layout(corral.root, task_id).control
    corral.wait_for(lambda: (out / "pid.1").exists() and (out / "pid.0").exists(), timeout=60)
    corral.wait_for(lambda: _ping(control).get("ok"), timeout=30)
    return proc, control, out


def test_full_disk_stalls_launching_then_carries_on(corral, spec_file, tmp_path, small_root):
    proc, control, out = _start(corral, spec_file, tmp_path, "df1")
    filler = _fill(small_root.parent)
    _overflow(control)
    (out / "go0").touch()  # job 0 ends: its exit is not durable, so job 2 must not start
    corral.wait_for(lambda: _ping(control).get("journal"), timeout=30)
    status = corral("status", "df1")
    assert "cannot write its journal" in status.stdout, status.stdout + status.stderr
    assert proc.poll() is None and _alive(out / "pid.1")  # the supervisor and its run live on
    assert not (out / "pid.2").exists()  # nothing launched while the launch is not durable
    refused = corral("kill", "df1")
    assert refused.returncode == 2 and "cannot write its journal" in refused.stderr
    filler.unlink()
    corral.wait_for(lambda: (out / "pid.2").exists(), timeout=30)  # launching again
    (out / "go").touch()
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert err.count("cannot write the journal") == 1, err  # said once
    assert "Traceback" not in err
    view = corral.status("df1")
    assert view["state"] == "SUCCESS" and view["jobs"]["succeeded"] == 5  # the submitted one too
    assert corral("read", "df1").returncode == 0


def test_full_disk_for_too_long_gives_up_in_one_line_then_recover_finishes(
    corral, spec_file, tmp_path, small_root
):
    proc, control, out = _start(corral, spec_file, tmp_path, "df2", env={"CORRAL_JOURNAL_PATIENCE": "1"})
    filler = _fill(small_root.parent)
    _overflow(control)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and "stayed unwritable" in lines[-1], err
    assert _alive(out / "pid.1")  # its run outlived it
    filler.unlink()
    (out / "go0").touch()
    (out / "go").touch()
    recovered = corral("recover", "df2", timeout=120)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    view = corral.status("df2")
    # the submission was never durable (nobody was told it was taken): 4 jobs, all done
    assert view["state"] == "SUCCESS" and view["jobs"]["succeeded"] == 4, view
