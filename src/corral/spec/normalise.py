"""Normalising a raw spec document in place: human units ("10MB", "1:30:00") become numbers,
environment values strings, where the document has the expected shape; anything else is left
for msgspec, which names the field and the expected type. Errors are SpecErrors naming the
file and field path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from corral.spec.errors import SpecError
from corral.spec.units import parse_duration, parse_size

__all__ = ["normalise_ensemble", "normalise_task"]


# -- normalising human units ------------------------------------------------------------------
# These walk the raw document where its shape is as expected and leave anything else for
# msgspec, which names the field and the expected type.

_DURATION_HINT = "e.g. 90, 90s, 5m, 1h30m, 1:30:00, 2-00:00:00"
_SIZE_HINT = "e.g. 4096, 512KiB, 10MB, 1G"


def _units(
    d: dict[str, Any],
    keys: tuple[str, ...],
    parse: Callable[[str], float],
    what: str,
    hint: str,
    path: str,
    file: str | None,
) -> None:
    for key in keys:
        value = d.get(key)
        if isinstance(value, str):
            try:
                d[key] = parse(value)
            except ValueError:
                raise SpecError(
                    f"not a {what}: {value!r}", file=file, path=_join(path, key), hint=hint
                ) from None


def _durations(d: dict[str, Any], keys: tuple[str, ...], path: str, file: str | None) -> None:
    _units(d, keys, parse_duration, "duration", _DURATION_HINT, path, file)


def _sizes(d: dict[str, Any], keys: tuple[str, ...], path: str, file: str | None) -> None:
    _units(d, keys, parse_size, "size", _SIZE_HINT, path, file)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _sub(d: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = d.get(key)
    if isinstance(value, dict):
        value = dict(value)
        d[key] = value
        return value
    return None


def _env(d: dict[str, Any], path: str, file: str | None) -> None:
    env = _sub(d, "env")
    if env is None:
        return
    for key, value in env.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            got = "null" if value is None else type(value).__name__
            hint = "quote it: YAML reads true/false/yes/no as booleans" if isinstance(value, bool) else None
            raise SpecError(
                f"expected a string, got {got}",
                file=file,
                path=f"{_join(path, 'env')}.{key}",
                hint=hint,
            )
        env[key] = str(value)  # numbers are fine as environment values; say them as written


def _resources(d: dict[str, Any], path: str, file: str | None) -> None:
    res = _sub(d, "resources")
    if res is not None:
        p = _join(path, "resources")
        _sizes(res, ("memory",), p, file)
        _durations(res, ("walltime",), p, file)


def _slurm(d: dict[str, Any], path: str, file: str | None) -> None:
    sl = _sub(d, "slurm")
    if sl is not None:
        p = _join(path, "slurm")
        _sizes(sl, ("memory",), p, file)
        _durations(sl, ("time", "poll_interval"), p, file)
        if isinstance(sl.get("extra"), str):
            sl["extra"] = [sl["extra"]]
        pilot = _sub(sl, "pilot")
        if pilot is not None:
            _sizes(pilot, ("memory", "stream_spool"), _join(p, "pilot"), file)
            _durations(pilot, ("time", "idle_timeout", "silence"), _join(p, "pilot"), file)


def _logger(d: dict[str, Any], path: str, file: str | None) -> None:
    lg = _sub(d, "logger")
    if lg is not None:
        rot = _sub(lg, "rotate")
        if rot is not None:
            _sizes(rot, ("size",), _join(_join(path, "logger"), "rotate"), file)


def _journal(d: dict[str, Any], file: str | None) -> None:
    journal = _sub(d, "journal")
    if journal is not None:
        _sizes(journal, ("compact_at",), "journal", file)


def _process(d: dict[str, Any], path: str, file: str | None) -> None:
    _durations(d, ("timeout", "min_duration"), path, file)
    if isinstance(d.get("after"), str):  # `after: setup` means `after: [setup]`
        d["after"] = [d["after"]]
    _env(d, path, file)
    _logger(d, path, file)


def _processes(d: dict[str, Any], path: str, file: str | None) -> None:
    procs = d.get("processes")
    if isinstance(procs, list):
        procs = list(procs)
        d["processes"] = procs
        for i, p in enumerate(procs):
            if isinstance(p, dict):
                procs[i] = dict(p)
                _process(procs[i], f"{_join(path, 'processes')}[{i}]", file)


def normalise_task(data: dict[str, Any], file: str | None = None, path: str = "") -> dict[str, Any]:
    """A copy of a task document with human units turned into numbers."""
    d = dict(data)
    _durations(d, ("finalization_wait", "kill_grace"), path, file)
    _processes(d, path, file)
    _resources(d, path, file)
    _slurm(d, path, file)
    _env(d, path, file)
    if not path:
        _journal(d, file)
    return d


def normalise_ensemble(data: dict[str, Any], file: str | None = None) -> dict[str, Any]:
    """A copy of an ensemble document with human units turned into numbers."""
    d = dict(data)
    _durations(d, ("retry_backoff",), "", file)
    _slurm(d, "", file)
    _journal(d, file)
    job = _sub(d, "job")
    if job is not None:
        _durations(job, ("timeout", "heartbeat", "finalization_wait", "kill_grace"), "job", file)
        _processes(job, "job", file)
        _resources(job, "job", file)
        _logger(job, "job", file)
        _env(job, "job", file)
    params = _sub(d, "params")
    if params is not None:
        for key, value in params.items():
            if isinstance(value, str | int | float):  # `alpha: 0.1` is one value
                params[key] = [value]
            elif value is None:
                raise SpecError(
                    "expected a list of values or {range: [...]}, got null",
                    file=file,
                    path=f"params.{key}",
                )
    return d
