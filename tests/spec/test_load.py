"""Loading specs: YAML, JSON and TOML agree; units; parse and type errors are one line."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from corral.spec import (
    Ensemble,
    Logger,
    Process,
    Range,
    Rotate,
    SpecError,
    Task,
    ensemble_from_builtins,
    load_spec,
    spec_to_builtins,
    task_from_builtins,
    task_from_python,
)
from corral.spec.load import loads_spec
from corral.spec.units import parse_duration, parse_size

WEB_YAML = """\
# A task: setup, then a server with a sidecar, then a finalizer.
name: web
processes:
  - name: setup
    cmd: echo "preparing {{task.id}}" && mkdir -p www
  - name: server
    cmd: python3 -m http.server {{ports.http}} --bind 127.0.0.1
    after: [setup]
    ephemeral: true
    logger: {mode: rotate, rotate: {size: 10MB, backups: 3}}
  - name: client
    argv: [curl, "http://127.0.0.1:{{ports.http}}/"]
    after: [setup]
    max_failures: 3
    min_duration: 1
    timeout: 5m
    env: {RETRIES: "3"}
  - name: cleanup
    cmd: echo "done with {{task.id}}"
    final: true
max_failures: 1
finalization_wait: 30
resources: {cpus: 2, memory: 1GB, walltime: "1:30:00"}
slurm: {partition: short, time: "2-00:00:00", memory: 512MiB}
"""

WEB_JSON = {
    "name": "web",
    "processes": [
        {"name": "setup", "cmd": 'echo "preparing {{task.id}}" && mkdir -p www'},
        {
            "name": "server",
            "cmd": "python3 -m http.server {{ports.http}} --bind 127.0.0.1",
            "after": ["setup"],
            "ephemeral": True,
            "logger": {"mode": "rotate", "rotate": {"size": "10MB", "backups": 3}},
        },
        {
            "name": "client",
            "argv": ["curl", "http://127.0.0.1:{{ports.http}}/"],
            "after": ["setup"],
            "max_failures": 3,
            "min_duration": 1,
            "timeout": 300,
            "env": {"RETRIES": "3"},
        },
        {"name": "cleanup", "cmd": 'echo "done with {{task.id}}"', "final": True},
    ],
    "max_failures": 1,
    "finalization_wait": 30,
    "resources": {"cpus": 2, "memory": 1073741824, "walltime": 5400},
    "slurm": {"partition": "short", "time": "2-00:00:00", "memory": "512MiB"},
}

WEB_TOML = """\
name = "web"
max_failures = 1
finalization_wait = 30
resources = {cpus = 2, memory = "1GB", walltime = "1:30:00"}
slurm = {partition = "short", time = "2-00:00:00", memory = "512MiB"}

[[processes]]
name = "setup"
cmd = 'echo "preparing {{task.id}}" && mkdir -p www'

[[processes]]
name = "server"
cmd = "python3 -m http.server {{ports.http}} --bind 127.0.0.1"
after = ["setup"]
ephemeral = true
logger = {mode = "rotate", rotate = {size = "10MB", backups = 3}}

[[processes]]
name = "client"
argv = ["curl", "http://127.0.0.1:{{ports.http}}/"]
after = ["setup"]
max_failures = 3
min_duration = 1
timeout = "5m"
env = {RETRIES = "3"}

[[processes]]
name = "cleanup"
cmd = 'echo "done with {{task.id}}"'
final = true
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def error_of(tmp_path: Path, text: str, name: str = "spec.yaml") -> str:
    path = write(tmp_path, name, text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(path), line
    return line[len(path) :]


# -- formats ---------------------------------------------------------------------------------


def test_yaml_json_toml_load_to_equal_tasks(tmp_path: Path) -> None:
    from_yaml = load_spec(write(tmp_path, "web.yaml", WEB_YAML))
    from_json = load_spec(write(tmp_path, "web.json", json.dumps(WEB_JSON)))
    from_toml = load_spec(write(tmp_path, "web.toml", WEB_TOML))
    assert from_yaml == from_json == from_toml
    assert isinstance(from_yaml, Task)


def test_loaded_task_has_typed_values(tmp_path: Path) -> None:
    task = load_spec(write(tmp_path, "web.yml", WEB_YAML))
    assert isinstance(task, Task)
    server, client = task.processes[1], task.processes[2]
    assert server.after == ("setup",)  # lists become tuples
    assert server.logger == Logger(mode="rotate", rotate=Rotate(size=10 * 1024**2, backups=3))
    assert client.argv == ("curl", "http://127.0.0.1:{{ports.http}}/")
    assert client.timeout == 300.0
    assert task.resources.memory == 1024**3 and task.resources.walltime == 5400.0
    assert task.slurm.time == 2 * 86400 and task.slurm.memory == 512 * 1024**2


def test_shape_decides_task_or_ensemble(tmp_path: Path) -> None:
    ens = load_spec(
        write(
            tmp_path,
            "sweep.yaml",
            """
name: sweep
job:
  cmd: echo "{{params.alpha}} {{params.seed}}" > {{job.dir}}/out.txt
  timeout: 90s
params:
  alpha: [0.1, 0.2, 0.5]
  seed: {range: [0, 20]}
  mode: fast
job_limit: 4
retries: 2
halt: {failures: 5}
""",
        )
    )
    assert isinstance(ens, Ensemble)
    assert ens.params["alpha"] == (0.1, 0.2, 0.5)
    assert ens.params["seed"] == Range(range=(0, 20))
    assert ens.params["mode"] == ("fast",)  # a single value is a one-value list
    assert ens.job.timeout == 90.0


def test_examples_in_the_repository_load() -> None:
    root = Path(__file__).resolve().parents[2] / "examples"
    for path in sorted(root.glob("*.yaml")):
        assert isinstance(load_spec(path), Task | Ensemble)


def test_convenient_shorthands(tmp_path: Path) -> None:
    task = load_spec(
        write(
            tmp_path,
            "s.yaml",
            """
name: s
processes:
  - {name: a, cmd: "true"}
  - {name: b, cmd: "true", after: a, env: {N: 3, X: 1.5}}
""",
        )
    )
    assert isinstance(task, Task)
    assert task.processes[1].after == ("a",)
    assert task.processes[1].env == {"N": "3", "X": "1.5"}


# -- units ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4096", 4096),
        ("10MB", 10 * 1024**2),
        ("1GB", 1024**3),
        ("512KiB", 512 * 1024),
        ("1.5G", int(1.5 * 1024**3)),
        ("2t", 2 * 1024**4),
        ("10 mb", 10 * 1024**2),
        ("7b", 7),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MB", "-1", "10XB", "1 0", "10i", "ten"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("1.5", 1.5),
        ("90s", 90),
        ("5m", 300),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("10:00", 600),
        ("1:30:00", 5400),
        ("2-00:00:00", 172800),
        ("1-12", 129600),
        ("1-1:1", 90060),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "1:2:3:4", "inf", "nan", "5x", "1-"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_bad_unit_names_field(tmp_path: Path) -> None:
    got = error_of(tmp_path, "name: x\nresources: {memory: lots}\nprocesses: [{name: a, cmd: t}]\n")
    assert got.startswith(": resources.memory: not a size: 'lots'")
    got = error_of(tmp_path, "name: x\nprocesses: [{name: a, cmd: t, timeout: soon}]\n")
    assert got.startswith(": processes[0].timeout: not a duration: 'soon'")


# -- errors: parse ----------------------------------------------------------------------------


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    got = error_of(tmp_path, "name: x\nprocesses:\n  - {name: a, cmd: t\n")
    assert got.startswith(":4: invalid YAML:"), got


def test_yaml_duplicate_key_is_an_error(tmp_path: Path) -> None:
    got = error_of(tmp_path, "name: x\nprocesses: []\nname: y\n")
    assert got == ":3: invalid YAML: duplicate key 'name' (first at line 1)"


def test_json_syntax_error_has_line(tmp_path: Path) -> None:
    got = error_of(tmp_path, '{"name": "x",\n "processes": [,]}', name="s.json")
    assert got.startswith(":2: invalid JSON:"), got


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    got = error_of(tmp_path, 'name = "x"\nprocesses = \n', name="s.toml")
    assert got.startswith(":2: invalid TOML:"), got


def test_unknown_extension(tmp_path: Path) -> None:
    got = error_of(tmp_path, "name: x", name="spec.txt")
    assert "unknown spec format" in got


def test_missing_file() -> None:
    with pytest.raises(SpecError, match=r"^/nonexistent/spec.yaml: no such file$"):
        load_spec("/nonexistent/spec.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ": expected a mapping with 'processes' (a task) or 'job' (an ensemble), got nothing"),
        (
            "- 1\n",
            ": expected a mapping with 'processes' (a task) or 'job' (an ensemble), got list",
        ),
        ("name: x\n", ": neither 'processes' (a task) nor 'job' (an ensemble)"),
        (
            "name: x\nprocess: []\n",
            ": neither 'processes' (a task) nor 'job' (an ensemble) (did you mean 'processes'?)",
        ),
        (
            "name: x\nprocesses: []\njob: {cmd: t}\n",
            ": a spec has 'processes' (a task) or 'job' (an ensemble), not both",
        ),
    ],
)
def test_shape_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert error_of(tmp_path, text) == expected


# -- errors: types (msgspec's messages translated) --------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: x\nprocesses: [{name: a, cmd: t, max_failures: x}]\n",
            ": processes[0].max_failures: expected int, got str 'x'",
        ),
        (
            "name: x\nprocesses: [{name: a, cmd: t, retries: 3}]\n",
            ": processes[0]: unknown field 'retries'",
        ),
        (
            "name: x\nprocesses: [{name: a, cmd: t, max_failure: 3}]\n",
            ": processes[0]: unknown field 'max_failure' (did you mean 'max_failures'?)",
        ),
        ("name: x\nprocesses: [{cmd: t}]\n", ": processes[0]: missing required field 'name'"),
        (
            "name: x\nprocesses: [{name: a, cmd: true}]\n",
            ": processes[0].cmd: expected str, got bool True "
            "(quote it: YAML reads true/false/yes/no as booleans)",
        ),
        (
            "name: x\nprocesses: [{name: a, cmd: t, logger: {destination: nope}}]\n",
            ": processes[0].logger.destination: invalid value 'nope' (one of: file, console, both, none)",
        ),
        (
            "name: x\nprocesses: [{name: a, cmd: t, env: {A: [1]}}]\n",
            ": processes[0].env.A: expected a string, got list",
        ),
        ("name: x\nprocesses: setup\n", ": processes: expected array, got str 'setup'"),
        (
            "name: s\njob: {cmd: t, heartbeet: 3}\n",
            ": job: unknown field 'heartbeet' (did you mean 'heartbeat'?)",
        ),
        (
            "name: s\njob: {cmd: t}\nhalt: {mode: nope}\n",
            ": halt.mode: invalid value 'nope' (one of: finish, kill)",
        ),
    ],
)
def test_type_errors_name_the_field(tmp_path: Path, text: str, expected: str) -> None:
    assert error_of(tmp_path, text) == expected


# -- Python API and journaling ----------------------------------------------------------------


def test_python_structs_are_checked_and_normalised() -> None:
    task = Task(name="t", processes=[Process(name="a", argv=["echo", "hi"])])  # type: ignore[arg-type]
    checked = task_from_python(task)
    assert checked.processes == (Process(name="a", argv=("echo", "hi")),)
    bad = Task(name="t", processes=(Process(name="a", cmd="t", max_failures="x"),))  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"processes\[0\]\.max_failures: expected int"):
        task_from_python(bad)
    with pytest.raises(SpecError, match=r"unknown process 'b'"):
        task_from_python(Task(name="t", processes=(Process(name="a", cmd="t", after=("b",)),)))


def test_python_dicts_are_loaded_like_documents() -> None:
    task = task_from_python({"name": "t", "processes": [{"name": "a", "cmd": "t", "timeout": "1m"}]})
    assert task.processes[0].timeout == 60.0


def test_builtins_round_trip(tmp_path: Path) -> None:
    task = load_spec(write(tmp_path, "web.yaml", WEB_YAML))
    assert isinstance(task, Task)
    data = spec_to_builtins(task)
    assert task_from_builtins(msgspec.json.decode(msgspec.json.encode(data))) == task
    ens = loads_spec("name: s\njob: {cmd: t}\nparams: {a: [1, x], b: {range: [3]}}\n", "yaml")
    assert isinstance(ens, Ensemble)
    data = msgspec.json.decode(msgspec.json.encode(spec_to_builtins(ens)))
    assert ensemble_from_builtins(data) == ens
