"""Validation: every bad spec is one line naming the file and the field path."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.spec import (
    Ensemble,
    Halt,
    JobTemplate,
    Process,
    Range,
    SpecError,
    Task,
    load_spec,
    validate_ensemble,
    validate_task,
)
from corral.spec.validate import find_cycle


def one_line(tmp_path: Path, text: str, name: str = "bad.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    line = str(info.value)
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith(f"{path}: "), line
    return line[len(str(path)) + 2 :]


def task_yaml(*processes: str, extra: str = "") -> str:
    return "name: t\n" + extra + "processes:\n" + "".join(f"  - {p}\n" for p in processes)


# -- the process graph ------------------------------------------------------------------------


def test_cycle_is_named(tmp_path: Path) -> None:
    got = one_line(
        tmp_path,
        task_yaml(
            "{name: setup, cmd: t, after: [server]}",
            "{name: server, cmd: t, after: [setup]}",
            "{name: other, cmd: t}",
        ),
    )
    assert got == "processes: cycle server -> setup -> server"


def test_long_cycle_is_named_in_run_order(tmp_path: Path) -> None:
    got = one_line(
        tmp_path,
        task_yaml(
            "{name: a, cmd: t, after: [c]}",
            "{name: b, cmd: t, after: [a]}",
            "{name: c, cmd: t, after: [b]}",
        ),
    )
    assert got == "processes: cycle b -> c -> a -> b"


def test_unknown_after_suggests_a_name(tmp_path: Path) -> None:
    got = one_line(
        tmp_path,
        task_yaml(
            "{name: setup, cmd: t}",
            "{name: server, cmd: t}",
            "{name: client, cmd: t, after: [setpu]}",
        ),
    )
    assert got == "processes[2].after: unknown process 'setpu' (did you mean 'setup'?)"


def test_duplicate_names(tmp_path: Path) -> None:
    got = one_line(tmp_path, task_yaml("{name: a, cmd: t}", "{name: a, cmd: t}"))
    assert got == "processes[1].name: duplicate process name 'a' (also processes[0])"


def test_self_dependency(tmp_path: Path) -> None:
    got = one_line(tmp_path, task_yaml("{name: a, cmd: t, after: [a]}"))
    assert got == "processes[0].after: 'a' cannot run after itself"


def test_final_only_after_final(tmp_path: Path) -> None:
    got = one_line(tmp_path, task_yaml("{name: a, cmd: t}", "{name: z, cmd: t, final: true, after: [a]}"))
    assert got.startswith("processes[1].after: final process 'z' cannot be after regular process 'a'")
    got = one_line(tmp_path, task_yaml("{name: z, cmd: t, final: true}", "{name: a, cmd: t, after: [z]}"))
    assert got == "processes[1].after: regular process 'a' cannot be after final process 'z'"


def test_final_after_final_is_fine() -> None:
    validate_task(
        Task(
            name="t",
            processes=(
                Process(name="a", cmd="t"),
                Process(name="y", cmd="t", final=True),
                Process(name="z", cmd="t", final=True, after=("y",)),
            ),
        )
    )


def test_at_least_one_process(tmp_path: Path) -> None:
    assert one_line(tmp_path, "name: t\nprocesses: []\n") == ("processes: a task needs at least one process")


def test_find_cycle_handles_deep_chains_without_recursion() -> None:
    n = 20_000
    chain = {f"p{i}": (f"p{i - 1}",) if i else () for i in range(n)}
    assert find_cycle(chain) is None
    chain["p0"] = (f"p{n - 1}",)
    cycle = find_cycle(chain)
    assert cycle is not None and len(cycle) == n + 1 and cycle[0] == cycle[-1]


# -- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../evil", "contains '/'"),
        ("a/b", "contains '/'"),
        (".hidden", "starts with '.'"),
        ("''", "is empty"),
        ("x" * 101, "is longer than 100 characters"),
        ('"a\\0b"', "contains NUL"),
        ('"a\\nb"', "contains a control character"),
    ],
)
def test_unsafe_process_names(tmp_path: Path, name: str, problem: str) -> None:
    got = one_line(tmp_path, task_yaml(f"{{name: {name}, cmd: t}}"))
    assert got.startswith("processes[0].name: process name ") and problem in got, got
    assert got.endswith("(it names a directory)")


def test_hundred_character_name_is_fine() -> None:
    validate_task(Task(name="t", processes=(Process(name="x" * 100, cmd="t"),)))


def test_env_keys_must_be_names(tmp_path: Path) -> None:
    got = one_line(tmp_path, task_yaml('{name: a, cmd: t, env: {"1X": v}}'))
    assert got == "processes[0].env: '1X' is not a valid environment variable name"
    got = one_line(tmp_path, task_yaml("{name: a, cmd: t}", extra='env: {"A-B": v}\n'))
    assert got == "env: 'A-B' is not a valid environment variable name"


# -- commands ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("process", "expected"),
    [
        ("{name: a}", "processes[0]: needs exactly one of cmd or argv"),
        ("{name: a, cmd: t, argv: [t]}", "processes[0]: needs exactly one of cmd or argv"),
        ("{name: a, argv: []}", "processes[0].argv: is empty"),
        ("{name: a, argv: ['', x]}", "processes[0].argv: program is empty"),
        ("{name: a, cmd: '  '}", "processes[0].cmd: is empty"),
    ],
)
def test_exactly_one_command(tmp_path: Path, process: str, expected: str) -> None:
    assert one_line(tmp_path, task_yaml(process)) == expected


# -- numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("max_failures", "-1", "processes[0].max_failures: must be >= 0, got -1"),
        ("timeout", "0", "processes[0].timeout: must be > 0, got 0.0"),
        ("timeout", "-5", "processes[0].timeout: must be > 0, got -5.0"),
        ("min_duration", "-1", "processes[0].min_duration: must be >= 0, got -1.0"),
        ("logger", "{rotate: {size: 0}}", "processes[0].logger.rotate.size: must be > 0, got 0"),
    ],
)
def test_process_numbers(tmp_path: Path, field: str, value: str, expected: str) -> None:
    assert one_line(tmp_path, task_yaml(f"{{name: a, cmd: t, {field}: {value}}}")) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("max_failures: -1", "max_failures: must be >= 0, got -1"),
        ("max_concurrency: -2", "max_concurrency: must be >= 0, got -2"),
        ("finalization_wait: -1", "finalization_wait: must be >= 0, got -1.0"),
        ("kill_grace: -1", "kill_grace: must be >= 0, got -1.0"),
        ("kill_grace: .nan", "kill_grace: must be >= 0, got nan"),
        ("resources: {memory: -1}", "resources.memory: must be >= 0, got -1"),
        ("resources: {walltime: 0}", "resources.walltime: must be > 0, got 0.0"),
        ("slurm: {time: 0}", "slurm.time: must be > 0, got 0.0"),
    ],
)
def test_task_numbers(tmp_path: Path, line: str, expected: str) -> None:
    assert one_line(tmp_path, task_yaml("{name: a, cmd: t}", extra=line + "\n")) == expected


def test_zero_means_forever_or_unlimited() -> None:
    validate_task(
        Task(
            name="t",
            max_failures=0,
            max_concurrency=0,
            kill_grace=0,
            finalization_wait=0,
            processes=(Process(name="a", cmd="t", max_failures=0),),
        )
    )


# -- templates checked at load ----------------------------------------------------------------


def test_template_syntax_error_at_load(tmp_path: Path) -> None:
    got = one_line(tmp_path, task_yaml("{name: a, cmd: 'echo {{ task.id }'}"))
    assert got.startswith("processes[0].cmd: template syntax:"), got


def test_unknown_task_attribute_at_load(tmp_path: Path) -> None:
    got = one_line(tmp_path, task_yaml("{name: a, cmd: 'echo {{task.ide}}'}"))
    assert got == "processes[0].cmd: unbound template name 'task.ide' (did you mean 'id'?)"


def test_loop_variables_and_globals_are_not_unbound() -> None:
    cmd = "{% for i in range(params.n) %}run {{i}} {{task.id}}; {% endfor %}{% set x = 1 %}{{x}}"
    validate_task(Task(name="t", processes=(Process(name="a", cmd=cmd),)))
    validate_ensemble(Ensemble(name="e", job=JobTemplate(cmd=cmd), params={"n": (2,)}))


def test_job_names_only_in_ensembles(tmp_path: Path) -> None:
    got = one_line(tmp_path, task_yaml("{name: a, argv: [echo, '{{job.index}}']}"))
    assert got == (
        "processes[0].argv[1]: unbound template name 'job.index' "
        "(job.* exists only in the jobs of an ensemble)"
    )


# -- ensembles --------------------------------------------------------------------------------


def ens_yaml(job: str = "{cmd: 'echo {{params.a}}'}", rest: str = "params: {a: [1, 2]}") -> str:
    return f"name: e\njob: {job}\n{rest}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            ens_yaml("{cmd: t, argv: [t]}"),
            "job: needs exactly one of cmd, argv or processes, got cmd and argv",
        ),
        (ens_yaml("{env: {A: b}}"), "job: needs exactly one of cmd, argv or processes"),
        (ens_yaml("{cmd: t}", "job_limit: -1"), "job_limit: must be >= 0, got -1"),
        (ens_yaml("{cmd: t}", "retries: -1"), "retries: must be >= 0, got -1"),
        (
            ens_yaml("{cmd: t}", "halt: {failure_rate: 0}"),
            "halt.failure_rate: must be in (0, 1], got 0.0 (0.1 = 10%)",
        ),
        (
            ens_yaml("{cmd: t}", "halt: {failure_rate: 1.5}"),
            "halt.failure_rate: must be in (0, 1], got 1.5 (0.1 = 10%)",
        ),
        (ens_yaml("{cmd: t}", "halt: {failures: 0}"), "halt.failures: must be >= 1, got 0"),
        (
            ens_yaml("{cmd: t}", "params: {a: {range: [1, 2, 3, 4]}}"),
            "params.a.range: needs 1 to 3 integers, got 4 ([stop], [start, stop] or [start, stop, step])",
        ),
        (
            ens_yaml("{cmd: t}", "params: {a: {range: []}}"),
            "params.a.range: needs 1 to 3 integers, got 0 ([stop], [start, stop] or [start, stop, step])",
        ),
        (
            ens_yaml("{cmd: t}", "params: {a: {range: [0, 10, 0]}}"),
            "params.a.range: step must not be 0",
        ),
        (
            ens_yaml("{cmd: t}", "params: {a: {range: [5, 1]}}"),
            "params.a.range: range(5, 1) is empty",
        ),
        (
            ens_yaml("{cmd: t}", "params: {a: []}"),
            "params.a: no values (an empty list would make zero jobs)",
        ),
        (
            ens_yaml("{cmd: t}", "params: {a-b: [1]}"),
            "params.a-b: parameter name 'a-b' is not an identifier "
            "(letters, digits and _, not starting with a digit)",
        ),
        (
            ens_yaml("{cmd: 'echo {{params.alhpa}}'}", "params: {alpha: [1]}"),
            "job.cmd: unbound template name 'params.alhpa' (did you mean 'alpha'?)",
        ),
        (
            ens_yaml("{cmd: 'echo {{params.zzz}}'}", "params: {alpha: [1]}"),
            "job.cmd: unbound template name 'params.zzz' (parameters: alpha)",
        ),
        (
            ens_yaml("{cmd: 'echo {{ports.http}}'}"),
            "job.cmd: unbound template name 'ports.http' (ensemble jobs have no ports)",
        ),
        (
            ens_yaml("{cmd: t, env: {X: '{{job.idx}}'}}"),
            "job.env.X: unbound template name 'job.idx' (did you mean 'index'?)",
        ),
        (
            ens_yaml("{processes: [{name: a, cmd: t, after: [b]}]}"),
            "job.processes[0].after: unknown process 'b'",
        ),
        (ens_yaml("{cmd: t, heartbeat: 0}"), "job.heartbeat: must be > 0, got 0.0"),
        (
            "name: ../e\njob: {cmd: t}\n",
            "name: ensemble name '../e' contains '/' (it names a directory)",
        ),
    ],
)
def test_ensemble_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert one_line(tmp_path, text) == expected


def test_ensemble_without_params_is_one_job() -> None:
    validate_ensemble(Ensemble(name="e", job=JobTemplate(cmd="echo {{job.index}}")))


def test_ensemble_with_params_file_defers_param_names() -> None:
    # the file's header is known only once ParamSpace reads it
    validate_ensemble(Ensemble(name="e", job=JobTemplate(cmd="echo {{params.x}}"), params_file="p.csv"))


def test_valid_ensemble_passes() -> None:
    validate_ensemble(
        Ensemble(
            name="e",
            job=JobTemplate(argv=("run", "{{params.a}}", "{{params.b}}", "{{job.dir}}")),
            params={"a": (1, 2), "b": Range(range=(10, 0, -3))},
            halt=Halt(failures=3, failure_rate=0.5),
        )
    )


def test_after_a_daemon_is_refused():
    from corral.spec import Process, Task, validate_task

    task = Task(
        name="t",
        processes=(
            Process(name="d", cmd="true", daemon=True, ephemeral=True),
            Process(name="x", cmd="true", after=("d",)),
        ),
    )
    with pytest.raises(SpecError, match=r"processes\[1\]\.after: 'x' cannot run after daemon 'd'"):
        validate_task(task, file="t.yaml")


def test_logger_destination_both_is_accepted():
    from corral.spec import Logger, Process, Task, validate_task

    validate_task(
        Task(name="t", processes=(Process(name="a", cmd="true", logger=Logger(destination="both")),))
    )


PILOT = """
name: p
backend: {backend}
slurm:
  pilot: {pilot}
job: {{cmd: "true"}}
params: {{i: [1]}}
"""


@pytest.mark.parametrize(
    ("backend", "pilot", "needle"),
    [
        ("slurm", "{workers: 0}", "slurm.pilot.workers: must be >= 1"),
        ("slurm", "{workers: 3, max_workers: 2}", "slurm.pilot.max_workers: must be >= workers (3)"),
        ("slurm", "{workers: 100000}", "slurm.pilot.workers: must be <= 10000"),
        ("slurm", "{cpus: 0}", "slurm.pilot.cpus: must be >= 1"),
        ("slurm", "{time: -1}", "slurm.pilot.time: must be > 0"),
        ("slurm", "{idle_timeout: 0}", "slurm.pilot.idle_timeout: must be > 0"),
        ("slurm", "{cpus: many}", "slurm.pilot.cpus"),
        ("slurm", "{nodes: 2}", "nodes"),
        ("local", "{workers: 1}", "slurm.pilot: needs backend: slurm"),
        ("slurm", '{stream_logs: "yes"}', "slurm.pilot.stream_logs: expected bool, got str"),
        (
            "slurm",
            "{stream_logs: true, stream_spool: 1000}",
            "slurm.pilot.stream_spool: must be at least 1MiB",
        ),
        ("slurm", "{stream_spool: lots}", "slurm.pilot.stream_spool"),
    ],
)
def test_pilot_block_errors_are_one_line(tmp_path: Path, backend: str, pilot: str, needle: str) -> None:
    msg = one_line(tmp_path, PILOT.format(backend=backend, pilot=pilot))
    assert needle in msg


def test_pilot_units_are_read(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(PILOT.format(backend="slurm", pilot='{time: "1:00:00", memory: 1GB, idle_timeout: 2m}'))
    ens = load_spec(path)
    assert not isinstance(ens, Task)
    pilot = ens.slurm.pilot
    assert pilot is not None and pilot.time == 3600 and pilot.memory == 2**30 and pilot.idle_timeout == 120
    assert not pilot.stream_logs and pilot.stream_spool == 2**30
    path.write_text(PILOT.format(backend="slurm", pilot="{stream_logs: true, stream_spool: 64MB}"))
    streamed = load_spec(path)
    assert not isinstance(streamed, Task) and streamed.slurm.pilot is not None
    assert streamed.slurm.pilot.stream_logs and streamed.slurm.pilot.stream_spool == 64 * 2**20
