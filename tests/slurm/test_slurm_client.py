"""SlurmClient against the real local Slurm (started by scripts/slurm-up.sh)."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from corral.backends.slurm_client import SlurmClient
from corral.backends.slurm_errors import SlurmError
from corral.backends.slurm_sbatch import SbatchRequest
from corral.backends.slurm_states import SlurmJobInfo, SlurmState

WaitFn = Callable[..., dict[str, SlurmJobInfo]]

SH = "#!/bin/sh\n"


def scontrol_show_job(job_id: str) -> dict[str, str]:
    """What slurmctld recorded for one job (`scontrol -o show job`), as key=value pairs: the
    tests' own look at what sbatch was given (corral itself reads squeue only)."""
    out = subprocess.run(
        ["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    return dict(part.split("=", 1) for part in out.split() if "=" in part)


def _name() -> str:
    return f"corral-test-{uuid.uuid4().hex[:8]}"


def test_single_job_completes_with_env_and_output(
    slurm: SlurmClient, wait_terminal: WaitFn, tmp_path: Path
) -> None:
    out = tmp_path / "out-%j.txt"
    req = SbatchRequest(
        script=SH + 'echo "value=$CORRAL_TEST_VALUE"; echo "cwd=$(pwd)"\n',
        job_name=_name(),
        output=str(out),
        chdir=tmp_path,
        time_limit_seconds=120,
        cpus_per_task=1,
        memory_bytes=64 * 1024 * 1024,
        requeue=False,
        env={"CORRAL_TEST_VALUE": "a,b=c d"},
    )
    job_id = slurm.sbatch(req)
    assert job_id.isdigit()
    final = wait_terminal([job_id])
    info = final[job_id]
    assert info.state is SlurmState.COMPLETED
    assert info.exit_code == 0
    text = (tmp_path / f"out-{job_id}.txt").read_text()
    assert "value=a,b=c d" in text
    assert f"cwd={tmp_path}" in text
    shown = scontrol_show_job(job_id)
    assert shown["JobState"] == "COMPLETED"
    assert shown["TimeLimit"] == "00:02:00"
    assert shown["MinMemoryNode"] == "64M"


def test_array_with_throttle(slurm: SlurmClient, wait_terminal: WaitFn, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text(SH + 'echo "task $SLURM_ARRAY_TASK_ID"\nsleep 0.2\n')
    req = SbatchRequest(
        script_path=script,
        job_name=_name(),
        array="0-19%4",
        output=str(tmp_path / "o-%A_%a.txt"),
    )
    array_id = slurm.sbatch(req)
    before = slurm.counts["squeue"]
    polls = 0
    max_running = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        infos = slurm.squeue([array_id])
        polls += 1
        running = sum(1 for i in infos.values() if i.state is SlurmState.RUNNING)
        max_running = max(max_running, running)
        if len(infos) == 20 and all(i.terminal for i in infos.values()):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"array {array_id} did not finish")
    assert slurm.counts["squeue"] - before == polls  # exactly one squeue per poll
    assert set(infos) == {f"{array_id}_{i}" for i in range(20)}
    assert all(i.state is SlurmState.COMPLETED and i.exit_code == 0 for i in infos.values())
    assert all(i.array_job_id == array_id for i in infos.values())
    assert {i.array_task_id for i in infos.values()} == set(range(20))
    assert max_running <= 4
    for i in range(20):
        assert (tmp_path / f"o-{array_id}_{i}.txt").read_text().strip() == f"task {i}"


def test_pending_array_range_is_expanded(slurm: SlurmClient, tmp_path: Path) -> None:
    req = SbatchRequest(
        wrap="true",
        job_name=_name(),
        array="3,7,9-12%2",
        output="/dev/null",
        extra_args=("--hold",),
    )
    array_id = slurm.sbatch(req)
    try:
        infos = slurm.squeue([array_id])
        assert set(infos) == {f"{array_id}_{i}" for i in (3, 7, 9, 10, 11, 12)}
        assert all(i.state is SlurmState.PENDING for i in infos.values())
    finally:
        slurm.scancel([array_id])


def test_failing_job_exit_code(slurm: SlurmClient, wait_terminal: WaitFn) -> None:
    job_id = slurm.sbatch(SbatchRequest(script=SH + "exit 3\n", job_name=_name(), output="/dev/null"))
    info = wait_terminal([job_id])[job_id]
    assert info.state is SlurmState.FAILED
    assert info.exit_code == 3
    shown = scontrol_show_job(job_id)
    assert shown["JobState"] == "FAILED"
    assert shown["ExitCode"] == "3:0"
    assert shown["Reason"] == "NonZeroExitCode"


def test_scancel_many_in_one_call(slurm: SlurmClient, wait_terminal: WaitFn) -> None:
    name = _name()
    ids = [slurm.sbatch(SbatchRequest(wrap="sleep 300", job_name=name, output="/dev/null")) for _ in range(6)]
    array_id = slurm.sbatch(SbatchRequest(wrap="sleep 300", job_name=name, array="0-9", output="/dev/null"))
    # let some start so both running and pending jobs get cancelled
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(i.state is SlurmState.RUNNING for i in slurm.squeue([*ids, array_id]).values()):
            break
        time.sleep(0.2)
    before = slurm.counts["scancel"]
    slurm.scancel([*ids, array_id, "999999999"])  # an unknown id is not an error
    assert slurm.counts["scancel"] == before + 1
    # tasks cancelled while pending vanish from squeue; the rest show CANCELLED
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        infos = slurm.squeue([*ids, array_id])
        if all(i.terminal for i in infos.values()):
            break
        time.sleep(0.25)
    assert infos, "cancelled jobs should still be listed for MinJobAge"
    assert all(i.state is SlurmState.CANCELLED for i in infos.values()), infos
    assert set(ids) <= set(infos)


def test_invalid_partition_raises_slurm_message(slurm: SlurmClient) -> None:
    before = dict(slurm.counts)
    with pytest.raises(SlurmError) as err:
        slurm.sbatch(SbatchRequest(wrap="true", partition="no-such-partition"))
    assert "invalid partition" in str(err.value).lower()
    assert err.value.returncode not in (None, 0)
    assert slurm.counts["sbatch"] == before.get("sbatch", 0) + 1
    assert slurm.counts["squeue"] == before.get("squeue", 0)


def test_unknown_and_empty_ids(slurm: SlurmClient) -> None:
    before = slurm.counts["squeue"]
    assert slurm.squeue([]) == {}
    assert slurm.counts["squeue"] == before
    assert slurm.squeue(["999999998"]) == {}
    assert slurm.counts["squeue"] == before + 1


def test_srun_steps_inside_allocation(slurm: SlurmClient, wait_terminal: WaitFn, tmp_path: Path) -> None:
    import shlex

    steps = [
        shlex.join(
            slurm.srun_step_argv(
                ["/bin/sh", "-c", f"sleep 1; echo step {n} $SLURM_STEP_ID"],
                cpus=1,
                memory_bytes=32 * 1024 * 1024,
                name=f"step{n}",
            )
        )
        for n in (1, 2)
    ]
    script = SH + "\n".join(f"{s} &" for s in steps) + "\nwait\n"
    out = tmp_path / "steps.txt"
    job_id = slurm.sbatch(SbatchRequest(script=script, job_name=_name(), cpus_per_task=2, output=str(out)))
    info = wait_terminal([job_id])[job_id]
    assert info.state is SlurmState.COMPLETED, out.read_text()
    text = out.read_text()
    assert "step 1" in text and "step 2" in text


@pytest.mark.slow
def test_time_limit_maps_to_timeout(slurm: SlurmClient, wait_terminal: WaitFn) -> None:
    """Slurm's smallest limit is one minute and it checks limits about every 30 s: ~1-2 min."""
    job_id = slurm.sbatch(
        SbatchRequest(wrap="sleep 600", job_name=_name(), time_limit_seconds=60, output="/dev/null")
    )
    info = wait_terminal([job_id], timeout=180)[job_id]
    assert info.state is SlurmState.TIMEOUT
    assert info.terminal
