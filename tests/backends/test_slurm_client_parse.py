"""Pure tests of the Slurm client: parsing canned outputs, state mapping, argv building.

No Slurm needed: commands are replaced by a fake runner.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.backends.slurm_client import SlurmClient, in_allocation
from corral.backends.slurm_errors import SlurmError, SlurmMissing, SlurmTimeout
from corral.backends.slurm_sbatch import (
    SbatchRequest,
    expand_array_spec,
    format_time_limit,
    parse_sbatch_output,
)
from corral.backends.slurm_squeue import SQUEUE_FORMAT, parse_exit_status, parse_squeue
from corral.backends.slurm_states import TERMINAL_STATES, SlurmState, is_terminal, map_state

# --------------------------------------------------------------------------- fakes


class FakeRunner:
    """Stands in for subprocess.run; answers from a queue of (rc, stdout, stderr)."""

    def __init__(self, *answers: tuple[int, str, str]) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    def __call__(self, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append({"argv": list(argv), **kw})
        rc, out, err = self.answers.pop(0) if self.answers else (0, "", "")
        return subprocess.CompletedProcess(list(argv), rc, out, err)


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    for name in ("sbatch", "squeue", "scancel", "scontrol", "sacct", "sinfo", "srun"):
        p = tmp_path / name
        p.write_text("#!/bin/sh\nexit 99\n")
        p.chmod(0o755)
    return tmp_path


def client(fake_bin: Path, *answers: tuple[int, str, str]) -> tuple[SlurmClient, FakeRunner]:
    runner = FakeRunner(*answers)
    return SlurmClient(bin_dir=fake_bin, runner=runner), runner


# --------------------------------------------------------------------------- states

ALL_NAMES = [
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "PREEMPTED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "REQUEUED",
    "SUSPENDED",
    "COMPLETING",
    "CONFIGURING",
    "RESIZING",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "SPECIAL_EXIT",
    "STOPPED",
    "SIGNALING",
    "STAGE_OUT",
    "REVOKED",
]


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_state_maps_to_itself(name: str) -> None:
    assert map_state(name) is SlurmState[name]
    assert map_state(name.lower()) is SlurmState[name]
    assert map_state(f"  {name}\n") is SlurmState[name]


def test_every_enum_member_is_covered() -> None:
    assert {s.name for s in SlurmState} == {*ALL_NAMES, "UNKNOWN"}


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("CANCELLED by 0", SlurmState.CANCELLED),
        ("CANCELLED by 1000", SlurmState.CANCELLED),
        ("CANCELLED+", SlurmState.CANCELLED),
        ("OUT_OF_MEMORY+", SlurmState.OUT_OF_MEMORY),
        ("PD", SlurmState.PENDING),
        ("R", SlurmState.RUNNING),
        ("CD", SlurmState.COMPLETED),
        ("CG", SlurmState.COMPLETING),
        ("TO", SlurmState.TIMEOUT),
        ("OOM", SlurmState.OUT_OF_MEMORY),
        ("NF", SlurmState.NODE_FAIL),
        ("", SlurmState.UNKNOWN),
        ("WHATEVER", SlurmState.UNKNOWN),
        ("N/A", SlurmState.UNKNOWN),
    ],
)
def test_decorated_and_compact_states(text: str, state: SlurmState) -> None:
    assert map_state(text) is state


def test_terminal_set() -> None:
    for s in SlurmState:
        assert is_terminal(s) == (s in TERMINAL_STATES)
    for s in (
        SlurmState.PENDING,
        SlurmState.RUNNING,
        SlurmState.COMPLETING,
        SlurmState.REQUEUED,
        SlurmState.REQUEUE_HOLD,
        SlurmState.SUSPENDED,
        SlurmState.UNKNOWN,
    ):
        assert not is_terminal(s)
    for s in (
        SlurmState.COMPLETED,
        SlurmState.FAILED,
        SlurmState.CANCELLED,
        SlurmState.OUT_OF_MEMORY,
        SlurmState.DEADLINE,
    ):
        assert is_terminal(s)


# --------------------------------------------------------------------------- small parsers


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0-4", [0, 1, 2, 3, 4]),
        ("7", [7]),
        ("3,7,9%4", [3, 7, 9]),
        ("0-199%64", list(range(200))),
        ("[2-5,9%2]", [2, 3, 4, 5, 9]),
        ("0-15:4", [0, 4, 8, 12]),
        ("5,1-2", [1, 2, 5]),
    ],
)
def test_expand_array_spec(spec: str, expected: list[int]) -> None:
    assert expand_array_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", "a-b", "5-1", "1-", "%4", "1,,2", "0-4:0"])
def test_expand_array_spec_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        expand_array_spec(spec)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", (0, 0)),
        ("768", (3, 0)),  # squeue exit_code: raw wait status
        ("9", (None, 9)),  # killed by SIGKILL
        ("3:0", (3, 0)),  # scontrol / sacct
        ("0:15", (0, 15)),
        ("N/A", (None, None)),
        ("", (None, None)),
        ("junk", (None, None)),
    ],
)
def test_parse_exit_status(text: str, expected: tuple[int | None, int | None]) -> None:
    assert parse_exit_status(text) == expected


def test_parse_sbatch_output() -> None:
    assert parse_sbatch_output("123\n") == "123"
    assert parse_sbatch_output("456;corral\n") == "456"
    with pytest.raises(SlurmError):
        parse_sbatch_output("Submitted batch job 5\n")


def test_format_time_limit() -> None:
    assert format_time_limit(60) == "0-00:01:00"
    assert format_time_limit(0.5) == "0-00:00:01"
    assert format_time_limit(90061) == "1-01:01:01"


# --------------------------------------------------------------------------- squeue

SQUEUE_OUT = """\
6_[2-19%4]|6|6|2-19%4|PENDING|JobArrayTaskLimit|0||wrap|
6_0|8|6|0|RUNNING|None|0|vm|wrap|
6_1|9|6|1|COMPLETED|None|0|vm|wrap|
7|7|7|N/A|FAILED|NonZeroExitCode|768|vm|wrap|
27|27|27|N/A|FAILED|JobLaunchFailure|9|vm|wrap|
28|28|28|N/A|CANCELLED by 0|None|0|vm|a|name|with|bars|
30_[3,7,9-10]|30|30|3,7,9-10|PENDING|Priority|0||job|
"""


def test_parse_squeue_expands_pending_ranges() -> None:
    infos = parse_squeue(SQUEUE_OUT)
    assert {k for k in infos if k.startswith("6_")} == {f"6_{i}" for i in range(20)}
    assert {k for k in infos if k.startswith("30_")} == {"30_3", "30_7", "30_9", "30_10"}
    p = infos["6_5"]
    assert p.state is SlurmState.PENDING
    assert p.reason == "JobArrayTaskLimit"
    assert (p.array_job_id, p.array_task_id) == ("6", 5)
    r = infos["6_0"]
    assert (r.state, r.raw_job_id, r.nodes, r.array_task_id) == (SlurmState.RUNNING, "8", "vm", 0)


def test_parse_squeue_plain_jobs() -> None:
    infos = parse_squeue(SQUEUE_OUT)
    f = infos["7"]
    assert (f.state, f.exit_code, f.signal, f.array_job_id, f.array_task_id) == (
        SlurmState.FAILED,
        3,
        0,
        None,
        None,
    )
    assert (infos["27"].exit_code, infos["27"].signal) == (None, 9)
    c = infos["28"]
    assert c.state is SlurmState.CANCELLED and c.raw_state == "CANCELLED by 0"
    assert c.name == "a|name|with|bars"


def test_parse_squeue_rejects_garbage() -> None:
    with pytest.raises(SlurmError):
        parse_squeue("this is not squeue output\n")
    assert parse_squeue("") == {}
    assert parse_squeue("\n\n") == {}


def test_squeue_issues_one_call_with_all_ids(fake_bin: Path) -> None:
    c, runner = client(fake_bin, (0, SQUEUE_OUT, ""))
    infos = c.squeue(["7", "6", "27", "7", "30", "28"])
    assert len(runner.calls) == 1 and c.counts["squeue"] == 1
    argv = runner.calls[0]["argv"]
    assert argv[0] == str(fake_bin / "squeue")
    assert "--jobs=27,28,30,6,7" in argv
    assert "--states=all" in argv and "--noheader" in argv
    assert f"--Format={SQUEUE_FORMAT}" in argv
    assert runner.calls[0]["timeout"] == c.timeout
    assert "6_19" in infos


def test_squeue_empty_input_makes_no_call(fake_bin: Path) -> None:
    c, runner = client(fake_bin)
    assert c.squeue([]) == {}
    assert runner.calls == [] and c.counts["squeue"] == 0


def test_squeue_purged_jobs_are_empty_not_error(fake_bin: Path) -> None:
    c, _ = client(fake_bin, (1, "", "slurm_load_jobs error: Invalid job id specified\n"))
    assert c.squeue(["12345"]) == {}


def test_squeue_other_error_raises_with_message(fake_bin: Path) -> None:
    c, _ = client(fake_bin, (1, "", "squeue: error: Unable to contact slurm controller (connect failure)\n"))
    with pytest.raises(SlurmError, match="Unable to contact slurm controller"):
        c.squeue(["1"])


def test_squeue_huge_id_list_is_still_one_call(fake_bin: Path) -> None:
    ids = [str(1_000_000 + i) for i in range(20_000)]
    out = "1000005|1000005|1000005|N/A|RUNNING|None|0|vm|x|\n99|99|99|N/A|RUNNING|None|0|vm|y|\n"
    c, runner = client(fake_bin, (0, out, ""))
    infos = c.squeue(ids)
    assert len(runner.calls) == 1
    assert not any(a.startswith("--jobs=") for a in runner.calls[0]["argv"])
    assert set(infos) == {"1000005"}  # filtered locally


def test_squeue_timeout(fake_bin: Path) -> None:
    def runner(argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(argv, kw["timeout"])

    c = SlurmClient(bin_dir=fake_bin, runner=runner, timeout=3)
    with pytest.raises(SlurmTimeout, match="did not answer within 3s"):
        c.squeue(["1"])


# --------------------------------------------------------------------------- sbatch


def test_sbatch_argv_full(fake_bin: Path, tmp_path: Path) -> None:
    c, runner = client(fake_bin, (0, "4242;corral\n", ""))
    req = SbatchRequest(
        script="#!/bin/sh\necho hi\n",
        job_name="sweep",
        partition="debug",
        account="proj",
        qos="normal",
        time_limit_seconds=3600,
        cpus_per_task=2,
        memory_bytes=1_500_000_000,
        gres="gpu:1",
        array="0-199%64",
        output="/runs/%A_%a.out",
        error="/runs/%A_%a.err",
        chdir=tmp_path,
        requeue=True,
        signal="B:TERM@60",
        comment="corral:abc",
        extra_args=("--exclusive",),
        env={"CORRAL_RUN": "x,y"},
    )
    assert c.sbatch(req) == "4242"
    call = runner.calls[0]
    assert call["argv"][1:] == [
        "--parsable",
        "--export=ALL",
        "--job-name=sweep",
        "--partition=debug",
        "--account=proj",
        "--qos=normal",
        "--time=0-01:00:00",
        "--cpus-per-task=2",
        "--mem=1431M",
        "--gres=gpu:1",
        "--array=0-199%64",
        "--output=/runs/%A_%a.out",
        "--error=/runs/%A_%a.err",
        f"--chdir={tmp_path}",
        "--requeue",
        "--signal=B:TERM@60",
        "--comment=corral:abc",
        "--exclusive",
    ]
    assert call["input"] == "#!/bin/sh\necho hi\n"
    assert call["env"]["CORRAL_RUN"] == "x,y"
    assert "PATH" in call["env"]  # the rest of the environment is kept


def test_sbatch_script_path_and_wrap(fake_bin: Path) -> None:
    c, runner = client(fake_bin, (0, "1\n", ""), (0, "2\n", ""))
    assert c.sbatch(SbatchRequest(script_path="/x/job.sh", requeue=False)) == "1"
    assert runner.calls[0]["argv"][-2:] == ["--no-requeue", "/x/job.sh"]
    assert runner.calls[0]["input"] is None and runner.calls[0]["env"] is None
    assert c.sbatch(SbatchRequest(wrap="echo a b")) == "2"
    assert runner.calls[1]["argv"][-1] == "--wrap=echo a b"
    assert c.counts["sbatch"] == 2


def test_sbatch_refused_raises_slurm_message(fake_bin: Path) -> None:
    msg = "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
    c, _ = client(fake_bin, (1, "", msg))
    with pytest.raises(SlurmError, match="Invalid partition name specified") as err:
        c.sbatch(SbatchRequest(wrap="true", partition="nope"))
    assert err.value.returncode == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"script": "x", "wrap": "y"},
        {"wrap": "y", "cpus_per_task": 0},
        {"wrap": "y", "memory_bytes": 0},
        {"wrap": "y", "time_limit_seconds": 0},
        {"wrap": "y", "array": "1-"},
        {"wrap": "y", "env": {"A=B": "c"}},
    ],
)
def test_sbatch_request_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SbatchRequest(**kwargs)


# --------------------------------------------------------------------------- scancel


def test_scancel_one_call_benign_errors_ignored(fake_bin: Path) -> None:
    err = "scancel: error: Kill job error on job id 7: Invalid job id specified\n"
    c, runner = client(fake_bin, (1, "", err))
    c.scancel([str(i) for i in range(500)] + ["7"])
    assert len(runner.calls) == 1 and c.counts["scancel"] == 1
    assert len(runner.calls[0]["argv"]) == 1 + 500


def test_scancel_signal_and_empty(fake_bin: Path) -> None:
    c, runner = client(fake_bin)
    c.scancel([])
    assert runner.calls == []
    c.scancel(["5", "6"], signal="TERM")
    assert runner.calls[0]["argv"][1:] == ["--signal=TERM", "--full", "5", "6"]


def test_scancel_real_error_raises(fake_bin: Path) -> None:
    err = "scancel: error: Kill job error on job id 5: Access/permission denied\n"
    c, _ = client(fake_bin, (1, "", err))
    with pytest.raises(SlurmError, match="permission denied"):
        c.scancel(["5"])


def test_scancel_chunks_only_when_huge(fake_bin: Path) -> None:
    c, runner = client(fake_bin)
    ids = [str(10_000_000 + i) for i in range(100_000)]  # ~900 kB of argv
    c.scancel(ids)
    assert 1 < len(runner.calls) <= 3
    sent = [a for call in runner.calls for a in call["argv"][1:]]
    assert sorted(sent) == sorted(ids)


# --------------------------------------------------------------------------- misc


def test_missing_slurm(tmp_path: Path) -> None:
    c = SlurmClient(bin_dir=tmp_path)
    assert not c.available()
    with pytest.raises(SlurmMissing, match="apt-get install slurm-client"):
        c.squeue(["1"])
    with pytest.raises(SlurmMissing):
        c.sbatch(SbatchRequest(wrap="true"))
    assert isinstance(SlurmMissing("x"), SlurmError)


def test_in_allocation() -> None:
    assert in_allocation({"SLURM_JOB_ID": "77"}) == "77"
    assert in_allocation({"SLURM_JOBID": "78"}) == "78"
    assert in_allocation({}) is None


def test_srun_step_argv(fake_bin: Path) -> None:
    c, runner = client(fake_bin)
    argv = c.srun_step_argv(["corral", "run", "--x"], cpus=2, memory_bytes=2**30, name="job7")
    assert argv == [
        str(fake_bin / "srun"),
        "--exclusive",
        "--nodes=1",
        "--ntasks=1",
        "--cpus-per-task=2",
        "--mem=1024M",
        "--job-name=job7",
        "--",
        "corral",
        "run",
        "--x",
    ]
    assert runner.calls == [] and sum(c.counts.values()) == 0
    with pytest.raises(ValueError):
        c.srun_step_argv([])


def test_parse_time_left_reads_squeue_durations_and_refuses_the_rest() -> None:
    from corral.backends.slurm_squeue import parse_time_left

    assert parse_time_left("4:59") == 299.0
    assert parse_time_left("1:00:00") == 3600.0
    assert parse_time_left("2-03:04:05") == 2 * 86400 + 3 * 3600 + 4 * 60 + 5
    assert parse_time_left(" 59\n") == 59.0
    for text in (
        "UNLIMITED",
        "NOT_SET",
        "INVALID",
        "",
        "-5",
        "1:2:3:4",
        "x-1:00",
        "1:-2",
        "\u0661:\u0660\u0660",
    ):
        assert parse_time_left(text) is None, text


@given(st.text(max_size=40))
def test_parse_time_left_never_raises(text: str) -> None:
    from corral.backends.slurm_squeue import parse_time_left

    value = parse_time_left(text)
    assert value is None or value >= 0
