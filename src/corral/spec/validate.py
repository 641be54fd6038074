"""Checks the types cannot express: the process graph, names, ranges of numbers, templates.

Run once, at load. Each check raises a SpecError naming the field path; the first problem wins
so the message is one line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

from corral.spec.address import parse_address
from corral.spec.errors import SpecError, did_you_mean
from corral.spec.model import (
    Control,
    Ensemble,
    JobTemplate,
    Journal,
    Logger,
    Process,
    Range,
    Resources,
    Slurm,
    Task,
)
from corral.spec.template import JOB_FIELDS, ROOTS, TASK_FIELDS, referenced_names, unbound_hint

MAX_NAME = 100
# attempts of a job are a 16-bit array in core; Slurm requeues (5 at most) add attempts too
MAX_RETRIES = 65_000
MAX_WORKERS = 10_000  # pilot workers of one ensemble (Slurm arrays are limited well below)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# POSIX portable user names (plus the trailing $ of machine accounts); 32 is useradd's limit
_USER_NAME = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]{0,31}\$?$")


# a journal compacted below these would be rewritten for little gain
MIN_COMPACT_AT = 4096
MIN_COMPACT_RECORDS = 100


def _join(prefix: str, path: str) -> str:
    return f"{prefix}.{path}" if prefix else path


class _Checker:
    def __init__(self, file: str | None, prefix: str = "") -> None:
        self.file = file
        self.prefix = prefix

    def fail(self, path: str, message: str, hint: str | None = None) -> SpecError:
        return SpecError(message, file=self.file, path=_join(self.prefix, path), hint=hint)

    # -- numbers --

    def at_least(self, path: str, value: float, low: float) -> None:
        if not (math.isfinite(value) and value >= low):
            raise self.fail(path, f"must be >= {low:g}, got {value!r}")

    def positive(self, path: str, value: float | None) -> None:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise self.fail(path, f"must be > 0, got {value!r}")

    # -- names --

    def safe_name(self, path: str, name: str, what: str) -> None:
        """A name used as a path component (log and run directories)."""
        problem = None
        if not name:
            problem = "is empty"
        elif "/" in name:
            problem = "contains '/'"
        elif "\0" in name:
            problem = "contains NUL"
        elif name.startswith("."):
            problem = "starts with '.'"
        elif len(name) > MAX_NAME:
            problem = f"is longer than {MAX_NAME} characters"
        elif any(not ch.isprintable() for ch in name):
            problem = "contains a control character"
        if problem:
            raise self.fail(path, f"{what} {name!r} {problem}", "it names a directory")

    def env(self, path: str, env: dict[str, str]) -> None:
        for key, value in env.items():
            if not _ENV_NAME.match(key):
                raise self.fail(path, f"{key!r} is not a valid environment variable name")
            if "\0" in value:
                raise self.fail(f"{path}.{key}", "contains NUL")

    def user(self, path: str, user: str | None) -> None:
        if user is not None and not _USER_NAME.fullmatch(user):
            raise self.fail(
                path,
                f"{user!r} is not a user name",
                "letters, digits, '.', '_' and '-' (not first), at most 32 characters",
            )

    # -- structs --

    def logger(self, path: str, logger: Logger) -> None:
        self.positive(f"{path}.rotate.size", logger.rotate.size)
        self.at_least(f"{path}.rotate.backups", logger.rotate.backups, 0)

    def resources(self, path: str, res: Resources) -> None:
        self.at_least(f"{path}.cpus", res.cpus, 0)
        self.at_least(f"{path}.memory", res.memory, 0)
        self.at_least(f"{path}.gpus", res.gpus, 0)
        self.positive(f"{path}.walltime", res.walltime)

    def slurm(self, path: str, slurm: Slurm) -> None:
        self.positive(f"{path}.time", slurm.time)
        self.positive(f"{path}.cpus_per_task", slurm.cpus_per_task)
        self.positive(f"{path}.memory", slurm.memory)
        self.positive(f"{path}.poll_interval", slurm.poll_interval)
        pilot = slurm.pilot
        if pilot is not None:
            where = f"{path}.pilot"
            self.at_least(f"{where}.workers", pilot.workers, 1)
            for name, value in (("workers", pilot.workers), ("max_workers", pilot.max_workers or 1)):
                if value > MAX_WORKERS:
                    raise self.fail(f"{where}.{name}", f"must be <= {MAX_WORKERS}, got {value}")
            if pilot.max_workers is not None and pilot.max_workers < pilot.workers:
                raise self.fail(
                    f"{where}.max_workers",
                    f"must be >= workers ({pilot.workers}), got {pilot.max_workers}",
                )
            self.at_least(f"{where}.cpus", pilot.cpus, 1)
            self.at_least(f"{where}.memory", pilot.memory, 0)
            self.positive(f"{where}.time", pilot.time)
            self.positive(f"{where}.idle_timeout", pilot.idle_timeout)
            self.positive(f"{where}.silence", pilot.silence)
            if pilot.stream_spool < 1 << 20:
                raise self.fail(f"{where}.stream_spool", f"must be at least 1MiB, got {pilot.stream_spool}")

    def control(self, path: str, control: Control) -> None:
        if control.listen is not None:
            try:
                parse_address(control.listen)
            except ValueError as exc:
                raise self.fail(f"{path}.listen", str(exc), "e.g. 0.0.0.0:0 (port 0: a free one)") from None

    def journal(self, path: str, journal: Journal) -> None:
        if journal.compact_at < MIN_COMPACT_AT:
            raise self.fail(
                f"{path}.compact_at", f"must be >= {MIN_COMPACT_AT}, got {journal.compact_at!r}", "e.g. 64MB"
            )
        self.at_least(f"{path}.compact_records", journal.compact_records, MIN_COMPACT_RECORDS)

    def process(self, path: str, proc: Process) -> None:
        self.safe_name(f"{path}.name", proc.name, "process name")
        if (proc.cmd is None) == (proc.argv is None):
            raise self.fail(path, "needs exactly one of cmd or argv")
        if proc.cmd is not None and not proc.cmd.strip():
            raise self.fail(f"{path}.cmd", "is empty")
        if proc.argv is not None and (not proc.argv or not proc.argv[0]):
            raise self.fail(f"{path}.argv", "is empty" if not proc.argv else "program is empty")
        self.at_least(f"{path}.max_failures", proc.max_failures, 0)
        self.at_least(f"{path}.min_duration", proc.min_duration, 0)
        self.positive(f"{path}.timeout", proc.timeout)
        self.env(f"{path}.env", proc.env)
        self.logger(f"{path}.logger", proc.logger)
        self.user(f"{path}.user", proc.user)

    def graph(self, processes: tuple[Process, ...]) -> None:
        if not processes:
            raise self.fail("processes", "a task needs at least one process")
        index: dict[str, int] = {}
        for i, proc in enumerate(processes):
            self.process(f"processes[{i}]", proc)
            if proc.name in index:
                raise self.fail(
                    f"processes[{i}].name",
                    f"duplicate process name '{proc.name}' (also processes[{index[proc.name]}])",
                )
            index[proc.name] = i
        for i, proc in enumerate(processes):
            path = f"processes[{i}].after"
            for dep in proc.after:
                if dep == proc.name:
                    raise self.fail(path, f"'{proc.name}' cannot run after itself")
                if dep not in index:
                    raise self.fail(path, f"unknown process '{dep}'", did_you_mean(dep, index))
                other = processes[index[dep]]
                if proc.final and not other.final:
                    raise self.fail(
                        path,
                        f"final process '{proc.name}' cannot be after regular process '{dep}'",
                        "final processes already run after all regular ones",
                    )
                if other.final and not proc.final:
                    raise self.fail(
                        path, f"regular process '{proc.name}' cannot be after final process '{dep}'"
                    )
                if other.daemon:
                    raise self.fail(
                        path,
                        f"'{proc.name}' cannot run after daemon '{dep}': a daemon never finishes",
                        "start both together, or make the dependency a regular process",
                    )
        cycle = find_cycle({p.name: p.after for p in processes})
        if cycle:
            raise self.fail("processes", "cycle " + " -> ".join(cycle))

    def templates(self, fields: Iterable[tuple[str, str]], bound: dict[str, set[str] | None]) -> None:
        """Names every template may use. `bound[root]` lists allowed attributes (None: any)."""
        for path, text in fields:
            full = _join(self.prefix, path)
            if "\0" in text:  # exec (argv, environment, the working directory) cannot pass it
                raise self.fail(path, "contains NUL", "a command line, argument or path cannot hold one")
            for name in referenced_names(text, full, self.file):
                root, _, attr = name.partition(".")
                if root not in bound:
                    hint = unbound_hint(name, "job" in bound)
                    if root not in ROOTS:
                        hint = did_you_mean(root, ROOTS) or hint
                    elif root == "ports" and "job" in bound:
                        hint = "ensemble jobs have no ports"
                    raise self.fail(path, f"unbound template name '{name}'", hint)
                allowed = bound[root]
                if allowed is not None and attr and attr not in allowed:
                    hint = did_you_mean(attr, allowed)
                    if hint is None and root == "params":
                        hint = "parameters: " + (", ".join(sorted(allowed)) or "none")
                    raise self.fail(path, f"unbound template name '{name}'", hint or unbound_hint(name))


def find_cycle(after: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as names `[a, b, a]`, or None. Iterative: no recursion limit."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(after, WHITE)
    for start in after:
        if color[start] != WHITE:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        color[start] = GREY
        while stack:
            node, i = stack[-1]
            deps = after.get(node, ())
            if i < len(deps):
                stack[-1] = (node, i + 1)
                dep = deps[i]
                if color.get(dep, BLACK) == GREY:
                    names = [n for n, _ in stack]
                    # report in the order things run: dep first, then what waits on it
                    cycle = names[names.index(dep) :]
                    cycle.reverse()
                    return [*cycle, cycle[0]]
                if color.get(dep, BLACK) == WHITE:
                    color[dep] = GREY
                    stack.append((dep, 0))
            else:
                color[node] = BLACK
                stack.pop()
    return None


def _task_fields(task: Task) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    for i, p in enumerate(task.processes):
        if p.cmd is not None:
            fields.append((f"processes[{i}].cmd", p.cmd))
        for j, a in enumerate(p.argv or ()):
            fields.append((f"processes[{i}].argv[{j}]", a))
        fields.extend((f"processes[{i}].env.{k}", v) for k, v in p.env.items())
    fields.extend((f"env.{k}", v) for k, v in task.env.items())
    if task.sandbox is not None:
        fields.append(("sandbox", task.sandbox))
    return fields


def validate_task(task: Task, file: str | None = None) -> None:
    """Raise a SpecError for the first problem in `task`; ports and params are bound at run."""
    check = _Checker(file)
    check.safe_name("name", task.name, "task name")
    check.graph(task.processes)
    check.at_least("max_failures", task.max_failures, 0)
    check.at_least("max_concurrency", task.max_concurrency, 0)
    check.at_least("finalization_wait", task.finalization_wait, 0)
    check.at_least("kill_grace", task.kill_grace, 0)
    check.resources("resources", task.resources)
    check.slurm("slurm", task.slurm)
    if task.slurm.pilot is not None:
        raise check.fail(
            "slurm.pilot", "pilot workers run the jobs of an ensemble", "drop it, or make this an ensemble"
        )
    check.control("control", task.control)
    check.journal("journal", task.journal)
    check.env("env", task.env)
    check.user("user", task.user)
    check.templates(_task_fields(task), {"task": set(TASK_FIELDS), "ports": None, "params": None})


def _job(check: _Checker, job: JobTemplate) -> list[tuple[str, str]]:
    given = [k for k in ("cmd", "argv", "processes") if getattr(job, k) is not None]
    if len(given) != 1:
        raise check.fail(
            "job",
            "needs exactly one of cmd, argv or processes" + (f", got {' and '.join(given)}" if given else ""),
        )
    fields: list[tuple[str, str]] = []
    if job.cmd is not None:
        if not job.cmd.strip():
            raise check.fail("job.cmd", "is empty")
        fields.append(("job.cmd", job.cmd))
    if job.argv is not None:
        if not job.argv or not job.argv[0]:
            raise check.fail("job.argv", "is empty" if not job.argv else "program is empty")
        fields.extend((f"job.argv[{j}]", a) for j, a in enumerate(job.argv))
    if job.processes is not None:
        inner = _Checker(check.file, "job")
        inner.graph(job.processes)
        fields.extend(
            ("job." + path, text) for path, text in _task_fields(Task(name="job", processes=job.processes))
        )
    check.env("job.env", job.env)
    fields.extend((f"job.env.{k}", v) for k, v in job.env.items())
    check.positive("job.timeout", job.timeout)
    check.positive("job.heartbeat", job.heartbeat)
    check.at_least("job.max_failures", job.max_failures, 0)
    check.at_least("job.max_concurrency", job.max_concurrency, 0)
    check.at_least("job.finalization_wait", job.finalization_wait, 0)
    check.at_least("job.kill_grace", job.kill_grace, 0)
    check.resources("job.resources", job.resources)
    check.logger("job.logger", job.logger)
    check.user("job.user", job.user)
    return fields


def validate_ensemble(ens: Ensemble, file: str | None = None) -> None:
    """Raise a SpecError for the first problem in `ens`."""
    check = _Checker(file)
    check.safe_name("name", ens.name, "ensemble name")
    fields = _job(check, ens.job)
    check.at_least("job_limit", ens.job_limit, 0)
    check.at_least("retries", ens.retries, 0)
    if ens.retries > MAX_RETRIES:
        hint = "a job's attempts are counted in 16 bits"
        raise check.fail("retries", f"must be <= {MAX_RETRIES}, got {ens.retries}", hint)
    check.at_least("retry_backoff", ens.retry_backoff, 0)
    if ens.halt.failures is not None:
        check.at_least("halt.failures", ens.halt.failures, 1)
    rate = ens.halt.failure_rate
    if rate is not None and not (0 < rate <= 1):
        raise check.fail("halt.failure_rate", f"must be in (0, 1], got {rate!r}", "0.1 = 10%")
    check.slurm("slurm", ens.slurm)
    if ens.slurm.pilot is not None and ens.backend != "slurm":
        raise check.fail("slurm.pilot", f"needs backend: slurm, got {ens.backend}", "set backend: slurm")
    check.control("control", ens.control)
    check.journal("journal", ens.journal)
    for key, values in ens.params.items():
        path = f"params.{key}"
        if not key.isidentifier():
            raise check.fail(
                path,
                f"parameter name {key!r} is not an identifier",
                "letters, digits and _, not starting with a digit",
            )
        if isinstance(values, Range):
            r = values.range
            if not 1 <= len(r) <= 3:
                raise check.fail(
                    f"{path}.range",
                    f"needs 1 to 3 integers, got {len(r)}",
                    "[stop], [start, stop] or [start, stop, step]",
                )
            if len(r) == 3 and r[2] == 0:
                raise check.fail(f"{path}.range", "step must not be 0")
            if not range(*r):  # len() would overflow past 2**63 - 1 numbers
                raise check.fail(f"{path}.range", f"range({', '.join(map(str, r))}) is empty")
        elif not values:
            raise check.fail(path, "no values", "an empty list would make zero jobs")
    if ens.params_file is not None and not ens.params_file.strip():
        raise check.fail("params_file", "is empty")
    # params from a file are known only once it is read (ParamSpace); the matrix keys now
    params: set[str] | None = None if ens.params_file else set(ens.params)
    check.templates(
        fields,
        {"task": set(TASK_FIELDS), "params": params, "job": set(JOB_FIELDS)},
    )


def users_of(subject: Task | Ensemble) -> list[tuple[str, str]]:
    """(field path, user name) of every `user:` the spec sets."""
    if isinstance(subject, Ensemble):
        job = subject.job
        found = [("job.user", job.user)] if job.user else []
        inner = enumerate(job.processes or ())
        return found + [(f"job.processes[{i}].user", p.user) for i, p in inner if p.user]
    found = [("user", subject.user)] if subject.user else []
    return found + [(f"processes[{i}].user", p.user) for i, p in enumerate(subject.processes) if p.user]
