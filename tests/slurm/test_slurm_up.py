"""scripts/slurm-repair-state.sh (run by slurm-up.sh before slurmctld starts): a test cluster's
stale state is repaired. Checked with a real slurmctld on a separate StateSaveLocation, ports,
pid and log files (the shared test cluster is not touched)."""

from __future__ import annotations

import os
import pwd
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPAIR = Path(__file__).resolve().parents[2] / "scripts" / "slurm-repair-state.sh"
CONF = Path("/etc/slurm/slurm.conf")
SLURMCTLD = "/usr/sbin/slurmctld"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not CONF.exists() or not os.access(SLURMCTLD, os.X_OK),
    reason="needs root and the local test cluster's slurm.conf and slurmctld (scripts/slurm-up.sh)",
)


@pytest.fixture
def where() -> Iterator[Path]:
    """A directory slurmctld (running as SlurmUser) can reach: pytest's tmp_path is 0700."""
    path = Path(tempfile.mkdtemp(prefix="corral-slurm-state-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _slurm_user() -> str:
    found = re.search(r"(?m)^SlurmUser=(\S+)", CONF.read_text())
    return found.group(1) if found else "root"


def _conf(tmp: Path) -> Path:
    """The test cluster's configuration, with everything slurmctld writes moved under tmp."""
    port = random.randrange(20000, 30000)
    moved = {
        "StateSaveLocation": str(tmp / "state"),
        "SlurmctldPort": str(port),
        "SlurmdPort": str(port + 1),
        "SlurmctldPidFile": str(tmp / "ctld.pid"),
        "SlurmdPidFile": str(tmp / "d.pid"),
        "SlurmctldLogFile": str(tmp / "ctld.log"),
        "SlurmdSpoolDir": str(tmp / "dspool"),
    }
    text = CONF.read_text()
    for key, value in moved.items():
        text = re.sub(rf"(?m)^{key}=.*$", f"{key}={value}", text)
    conf = tmp / "slurm.conf"
    conf.write_text(text)
    return conf


def _start(conf: Path, log: Path) -> tuple[bool, str]:
    """Run slurmctld in the foreground until it is the primary controller (True) or dies."""
    proc = subprocess.Popen(
        [SLURMCTLD, "-D", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            if "Running as primary controller" in text:
                return True, text
            if proc.poll() is not None:
                return False, log.read_text(errors="replace") if log.exists() else ""
            time.sleep(0.1)
        raise AssertionError(f"slurmctld neither ran nor died in 60 s: {log.read_text()[-500:]}")
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def _repair(state: Path, user: str) -> str:
    done = subprocess.run(
        ["bash", str(REPAIR), str(state), user, "corral"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_state_of_another_cluster_is_moved_aside(where: Path) -> None:
    conf, state, log, user = _conf(where), where / "state", where / "ctld.log", _slurm_user()
    state.mkdir()
    (state / "clustername").write_text("othercluster\n")
    shutil.chown(state, user)
    ok, text = _start(conf, log)
    assert not ok and "CLUSTER NAME MISMATCH" in text  # the failure slurm-up.sh used to hit

    said = _repair(state, user)
    assert "held the state of cluster 'othercluster'" in said
    assert (where / "state.stale" / "clustername").read_text() == "othercluster\n"
    log.unlink()
    ok, text = _start(conf, log)
    assert ok, text[-500:]


def test_state_files_of_another_user_are_given_back(where: Path) -> None:
    conf, state, log, user = _conf(where), where / "state", where / "ctld.log", _slurm_user()
    state.mkdir()
    (state / "hash.3").mkdir()
    other = "nobody" if user != "nobody" else "daemon"
    pwd.getpwnam(other)
    for path in (state, state / "hash.3"):
        shutil.chown(path, other)
    ok, text = _start(conf, log)
    assert not ok and ("Permission denied" in text or "Incorrect permissions" in text), text[-500:]

    said = _repair(state, user)
    assert "files of another user" in said
    log.unlink()
    ok, text = _start(conf, log)
    assert ok, text[-500:]
    assert _repair(state, user) == ""  # nothing left to repair: says nothing
