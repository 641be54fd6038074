"""Templating: names, shell quoting (no injection), raw, unbound names, cost."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from corral.spec import (
    JobContext,
    JobTemplate,
    Logger,
    Process,
    Resources,
    SpecError,
    Task,
    TemplateContext,
    job_task,
    render_task,
)
from corral.spec import template as template_module

CTX = TemplateContext(
    task_id="web-1",
    task_name="web",
    task_dir="/runs/web-1",
    ports={"http": 8080},
    params={"alpha": 0.5, "evil": "x; rm -rf /", "flags": "-v --fast", "items": "mine"},
)


def one(cmd: str | None = None, argv: tuple[str, ...] | None = None, **kw: object) -> Task:
    return Task(name="t", processes=(Process(name="p", cmd=cmd, argv=argv, **kw),))  # type: ignore[arg-type]


def cmd_of(cmd: str, ctx: TemplateContext = CTX) -> str:
    out = render_task(one(cmd), ctx).processes[0].cmd
    assert out is not None
    return out


def error_of(task: Task, ctx: TemplateContext = CTX) -> str:
    with pytest.raises(SpecError) as info:
        render_task(task, ctx, file="web.yaml")
    text = str(info.value)
    assert "\n" not in text
    return text


# -- names ------------------------------------------------------------------------------------


def test_every_name_renders() -> None:
    ctx = TemplateContext(
        "ens-1",
        "ens",
        "/runs/ens-1",
        {"http": 80},
        {"a": 3},
        JobContext(index=7, dir="/runs/ens-1/jobs/7", attempt=2),
    )
    text = (
        "{{task.id}} {{task.name}} {{task.dir}} {{ports.http}} {{params.a}} "
        "{{job.index}} {{job.dir}} {{job.attempt}}"
    )
    assert cmd_of(text, ctx) == "ens-1 ens /runs/ens-1 80 3 7 /runs/ens-1/jobs/7 2"


def test_whitespace_and_item_syntax() -> None:
    assert cmd_of("{{ ports.http }}:{{ ports['http'] }}") == "8080:8080"


def test_param_named_like_a_dict_method_is_the_param() -> None:
    assert cmd_of("{{params.items}}") == "mine"


def test_jinja_statements_and_globals_work() -> None:
    assert cmd_of("{% for i in range(3) %}{{i}}{% endfor %}") == "012"
    assert cmd_of("{% if params.alpha > 0.1 %}big{% endif %}") == "big"


def test_literal_braces_with_raw_block() -> None:
    assert cmd_of("awk '{% raw %}{{print $1}}{% endraw %}'") == "awk '{{print $1}}'"


def test_strings_without_templates_are_untouched() -> None:
    task = one("echo '{ not a template }' ${HOME}", env={"A": "b"})
    assert render_task(task, CTX) is task


# -- quoting ----------------------------------------------------------------------------------


def test_cmd_values_are_shell_quoted() -> None:
    assert cmd_of("echo {{params.evil}}") == "echo 'x; rm -rf /'"
    assert cmd_of("echo {{params.alpha}}") == "echo 0.5"  # safe text needs no quotes


def test_shell_injection_is_impossible(tmp_path: object) -> None:
    payloads = ["x; rm -rf /", "$(touch pwned)", "`id`", "a'b\"c", "&& echo hi", "*", "\nnewline"]
    for value in payloads:
        ctx = TemplateContext("i", "n", "/d", {}, {"v": value})
        rendered = cmd_of("printf '%s' {{params.v}}", ctx)
        out = subprocess.run(["/bin/sh", "-c", rendered], capture_output=True, text=True, check=True)
        assert out.stdout == value, (value, rendered)


def test_raw_filter_leaves_value_unquoted() -> None:
    assert cmd_of("prog {{params.flags | raw}}") == "prog -v --fast"
    rendered = cmd_of("printf '%s|' {{params.flags | raw}}")
    out = subprocess.run(["/bin/sh", "-c", rendered], capture_output=True, text=True, check=True)
    assert out.stdout == "-v|--fast|"  # split by the shell, as asked


def test_argv_env_and_sandbox_are_not_quoted() -> None:
    task = Task(
        name="t",
        processes=(Process(name="p", argv=("echo", "{{params.evil}}"), env={"E": "{{params.evil}}"}),),
        env={"T": "{{task.id}} {{params.flags}}"},
        sandbox="{{task.dir}}/box {{params.alpha}}",
    )
    out = render_task(task, CTX)
    assert out.processes[0].argv == ("echo", "x; rm -rf /")
    assert out.processes[0].env == {"E": "x; rm -rf /"}
    assert out.env == {"T": "web-1 -v --fast"}
    assert out.sandbox == "/runs/web-1/box 0.5"


def test_rendering_keeps_every_other_field() -> None:
    task = Task(
        name="t",
        max_failures=4,
        kill_grace=1.0,
        processes=(
            Process(name="p", cmd="run {{task.id}}", after=(), max_failures=0, daemon=True, timeout=3.0),
        ),
    )
    out = render_task(task, CTX)
    assert out.processes[0].cmd == "run web-1"
    assert out.max_failures == 4 and out.kill_grace == 1.0
    assert out.processes[0].max_failures == 0 and out.processes[0].daemon and out.processes[0].timeout == 3.0


# -- unbound names ----------------------------------------------------------------------------


def test_unbound_port() -> None:
    task = Task(
        name="web",
        processes=(Process(name="a", cmd="t"), Process(name="b", cmd="serve {{ports.https}}")),
    )
    assert (
        error_of(task)
        == "web.yaml: processes[1].cmd: unbound template name 'ports.https' (pass -P https=PORT)"
    )


def test_unbound_param() -> None:
    assert error_of(one("run {{params.beta}}")) == (
        "web.yaml: processes[0].cmd: unbound template name 'params.beta' (pass --set beta=VALUE)"
    )


def test_unbound_in_argv_env_and_raw() -> None:
    assert "processes[0].argv[1]: unbound template name 'params.nope'" in error_of(
        one(argv=("x", "{{params.nope}}"))
    )
    assert "processes[0].env.X: unbound template name 'ports.db'" in error_of(
        one("t", env={"X": "{{ports.db}}"})
    )
    assert "unbound template name 'params.z'" in error_of(one("x {{params.z | raw}}"))


def test_job_outside_an_ensemble() -> None:
    assert error_of(one("echo {{job.index}}")) == (
        "web.yaml: processes[0].cmd: unbound template name 'job.index' "
        "(job.* exists only in the jobs of an ensemble)"
    )


def test_unknown_root_name() -> None:
    assert error_of(one("echo {{prams.x}}")) == (
        "web.yaml: processes[0].cmd: unbound template name 'prams.x' (names are task, ports, params, job)"
    )


def test_syntax_error_names_field() -> None:
    assert error_of(one("echo {{ oops")).startswith("web.yaml: processes[0].cmd: template syntax:")


# -- cache and cost ---------------------------------------------------------------------------


def test_each_template_string_is_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    template_module._CACHE.clear()
    compiled: list[Any] = []
    real = template_module._renderer

    def counting(template: Any) -> Any:
        compiled.append(template)
        return real(template)

    monkeypatch.setattr(template_module, "_renderer", counting)
    task = one("echo {{params.alpha}} {{task.id}}")
    for i in range(100):
        render_task(task, TemplateContext("t", "t", "/d", {}, {"alpha": i}))
    assert len(compiled) == 1


# -- job_task ---------------------------------------------------------------------------------


def test_job_task_single_command() -> None:
    tmpl = JobTemplate(
        cmd="run {{params.a}}",
        env={"A": "1"},
        timeout=9.0,
        heartbeat=5.0,
        max_failures=3,
        kill_grace=2.0,
        resources=Resources(cpus=2),
        logger=Logger(destination="none"),
    )
    task = job_task(tmpl, "sweep")
    assert task.name == "sweep" and task.env == {"A": "1"}
    assert task.kill_grace == 2.0 and task.resources == Resources(cpus=2)
    (main,) = task.processes
    assert main == Process(
        name="main",
        cmd="run {{params.a}}",
        max_failures=3,
        timeout=9.0,
        logger=Logger(destination="none"),
    )


def test_job_task_argv_and_processes() -> None:
    assert job_task(JobTemplate(argv=("a", "b")), "e").processes == (Process(name="main", argv=("a", "b")),)
    procs = (
        Process(name="server", cmd="s"),
        Process(name="client", cmd="c", after=("server",), timeout=1.0),
    )
    task = job_task(JobTemplate(processes=procs, timeout=60.0, max_failures=2), "e")
    assert [p.timeout for p in task.processes] == [60.0, 1.0]
    assert task.max_failures == 2 and task.processes[1].after == ("server",)


def test_job_task_renders_per_job() -> None:
    task = job_task(JobTemplate(cmd="cd {{job.dir}} && run {{params.x}} {{job.attempt}}"), "e")
    ctx = TemplateContext("e-1", "e", "/r", {}, {"x": "a b"}, JobContext(3, "/r/jobs/3", 1))
    assert render_task(task, ctx).processes[0].cmd == "cd /r/jobs/3 && run 'a b' 1"
