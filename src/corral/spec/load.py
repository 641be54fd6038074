"""Load a spec file (YAML, JSON, TOML) or a Python object into a validated Task or Ensemble.

Three steps, each failing with a SpecError naming the file and field path:
parse the text, normalise human units ("10MB", "1:30:00") in place, then let msgspec convert
the builtins into the typed model (lists become tuples, unknown fields are errors).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import msgspec
import yaml

from corral.spec.errors import SpecError, did_you_mean
from corral.spec.model import Ensemble, Task
from corral.spec.normalise import normalise_ensemble, normalise_task
from corral.spec.recordable import check_recordable
from corral.spec.validate import validate_ensemble, validate_task

FORMATS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml"}


# -- entry points -----------------------------------------------------------------------------


def load_spec(path: str | os.PathLike[str]) -> Task | Ensemble:
    """Read, convert and validate a spec file; the format comes from the extension."""
    file = os.fspath(path)
    fmt = FORMATS.get(Path(file).suffix.lower())
    if fmt is None:
        raise SpecError("unknown spec format", file=file, hint="use .yaml, .yml, .json or .toml")
    try:
        text = Path(file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("no such file", file=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read: {exc}", file=file) from None
    return loads_spec(text, fmt, file=file)


def loads_spec(text: str, fmt: str, file: str | None = None) -> Task | Ensemble:
    """Like load_spec, from text in `fmt` ("yaml", "json" or "toml")."""
    return spec_from_builtins(parse_text(text, fmt, file), file=file)


def spec_from_builtins(data: object, file: str | None = None) -> Task | Ensemble:
    """Convert a parsed document (dicts and lists) to a validated Task or Ensemble by its shape."""
    if not isinstance(data, dict):
        got = "nothing" if data is None else type(data).__name__
        raise SpecError(
            f"expected a mapping with 'processes' (a task) or 'job' (an ensemble), got {got}",
            file=file,
        )
    if "job" in data and "processes" in data:
        raise SpecError("a spec has 'processes' (a task) or 'job' (an ensemble), not both", file=file)
    if "job" in data:
        ens = _convert(normalise_ensemble(data, file), Ensemble, file)
        validate_ensemble(ens, file=file)
        return ens
    if "processes" in data:
        task = _convert(normalise_task(data, file), Task, file)
        validate_task(task, file=file)
        return task
    raise SpecError(
        "neither 'processes' (a task) nor 'job' (an ensemble)",
        file=file,
        hint=did_you_mean_key(data),
    )


def spec_from_python(obj: object, file: str | None = None) -> Task | Ensemble:
    """Accept what the Python API builds (Task/Ensemble structs, or plain dicts) and validate it.

    Struct constructors do not check types (`Process(argv=["a"])` keeps a list), so a struct is
    round-tripped through builtins: that checks every type and turns lists into tuples.
    """
    if isinstance(obj, Task | Ensemble):
        try:
            data = msgspec.to_builtins(obj, str_keys=True)
        except (TypeError, RecursionError) as exc:
            raise SpecError(f"cannot convert: {exc}", file=file) from None
        cls: type[Task] | type[Ensemble] = type(obj)
        if cls is Task:
            task = _convert(data, Task, file)
            validate_task(task, file=file)
            return task
        ens = _convert(data, Ensemble, file)
        validate_ensemble(ens, file=file)
        return ens
    return spec_from_builtins(obj, file=file)


def task_from_python(obj: object, file: str | None = None) -> Task:
    """A validated Task from a Task struct or a dict shaped like one."""
    spec = spec_from_python(obj, file=file)
    if not isinstance(spec, Task):
        raise SpecError("expected a task (with 'processes'), got an ensemble", file=file)
    return spec


def ensemble_from_python(obj: object, file: str | None = None) -> Ensemble:
    """A validated Ensemble from an Ensemble struct or a dict shaped like one."""
    spec = spec_from_python(obj, file=file)
    if not isinstance(spec, Ensemble):
        raise SpecError("expected an ensemble (with 'job'), got a task", file=file)
    return spec


def did_you_mean_key(data: dict[Any, Any]) -> str | None:
    for key in data:
        if isinstance(key, str):
            hint = did_you_mean(key, ("processes", "job"))
            if hint:
                return hint
    return None


# -- parsing ----------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: PyYAML would silently keep the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hashable = hash(key) is not None
        except TypeError:
            hashable = False
        if hashable and key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {seen[key]})",
                key_node.start_mark,
            )
        if hashable:
            seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)

_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)$")


def parse_text(text: str, fmt: str, file: str | None = None) -> object:
    """Parse `text` to builtins; syntax errors become SpecErrors with the line when known."""
    try:
        return _parse(text, fmt, file)
    except RecursionError:  # the parsers recurse per level: [[[[...]]]] exhausts the stack
        raise SpecError("nested too deeply to parse", file=file, hint="a spec is a few levels deep") from None


def _parse(text: str, fmt: str, file: str | None) -> object:
    if fmt == "yaml":
        try:
            return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or str(exc)
            line = mark.line + 1 if mark is not None else None
            raise SpecError(f"invalid YAML: {problem}", file=file, line=line) from None
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"invalid JSON: {exc.msg}", file=file, line=exc.lineno) from None
    if fmt == "toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            msg = str(exc)
            m = _TOML_LINE.search(msg)
            line = int(m.group(1)) if m else None
            msg = msg[: m.start()].strip() if m else msg
            raise SpecError(f"invalid TOML: {msg}", file=file, line=line) from None
    raise SpecError(f"unknown spec format {fmt!r}", file=file, hint="yaml, json or toml")


# -- msgspec conversion, with its errors translated -------------------------------------------

T = typing.TypeVar("T")

_AT = re.compile(r"^(.*?)(?: - at `\$(.*)`)?$", re.DOTALL)
_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+|\.\.\.)\]")


def _convert(data: object, cls: type[T], file: str | None) -> T:
    check_recordable(data, file)  # the journal records the spec: every value must encode there
    try:
        return msgspec.convert(data, cls, str_keys=True)
    except msgspec.ValidationError as exc:
        raise translate_validation_error(exc, cls, data, file) from None


def translate_validation_error(
    exc: msgspec.ValidationError, root: type, data: object, file: str | None
) -> SpecError:
    """msgspec's "Expected `int`, got `str` - at `$.processes[2].after`" -> a SpecError."""
    m = _AT.match(str(exc))
    assert m is not None  # the pattern matches any text
    message, where = m.group(1), m.group(2) or ""
    segments: list[str | int] = []
    for name, index in _SEGMENT.findall(where):
        segments.append(name if name else (int(index) if index != "..." else "..."))
    path = where.lstrip(".")
    hint = None
    unknown = re.match(r"Object contains unknown field `(.*)`", message)
    missing = re.match(r"Object missing required field `(.*)`", message)
    expected = re.match(r"Expected `(.*?)`, got `(.*?)`", message)
    enum = re.match(r"Invalid enum value (.*)", message)
    if unknown:
        field = unknown.group(1)
        message = f"unknown field '{field}'"
        struct = _struct_at(root, segments)
        if struct is not None:
            hint = did_you_mean(field, struct.__struct_fields__)
    elif missing:
        message = f"missing required field '{missing.group(1)}'"
    elif expected:
        # "str | null": null is the default when absent, not something to write
        want = " | ".join(w for w in expected.group(1).split(" | ") if w != "null") or "null"
        got = expected.group(2)
        value = _value_at(data, segments)
        shown = f" {value!r}" if isinstance(value, str | int | float) and len(repr(value)) < 60 else ""
        message = f"expected {want.replace('`', '')}, got {got}{shown}"
        if got == "bool" and "str" in want:
            hint = "quote it: YAML reads true/false/yes/no as booleans"
    elif enum:
        message = f"invalid value {enum.group(1)}"
        choices = _literal_choices(root, segments)
        if choices:
            hint = "one of: " + ", ".join(choices)
    return SpecError(message, file=file, path=path, hint=hint)


def _value_at(data: object, segments: list[str | int]) -> object:
    for seg in segments:
        by_key = isinstance(seg, str) and isinstance(data, dict) and seg in data
        by_index = isinstance(seg, int) and isinstance(data, list | tuple) and seg < len(data)
        if not (by_key or by_index):
            return None
        data = data[seg]  # type: ignore[index]
    return data


def _unwrap(hint: object) -> list[object]:
    """The member types of a union / the element type of a tuple, flattened."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        out: list[object] = []
        for arg in typing.get_args(hint):
            out.extend(_unwrap(arg))
        return out
    return [hint]


def _type_at(root: type, segments: list[str | int]) -> list[object]:
    current: list[object] = [root]
    for seg in segments:
        following: list[object] = []
        for t in current:
            for member in _unwrap(t):
                if (
                    isinstance(seg, str)
                    and seg != "..."
                    and isinstance(member, type)
                    and issubclass(member, msgspec.Struct)
                ):
                    hints = typing.get_type_hints(member)
                    if seg in hints:
                        following.append(hints[seg])
                elif typing.get_origin(member) in (tuple, dict):
                    args = typing.get_args(member)
                    if args:
                        following.append(args[-1] if typing.get_origin(member) is dict else args[0])
        current = following
    return current


def _struct_at(root: type, segments: list[str | int]) -> type[msgspec.Struct] | None:
    for t in _type_at(root, segments):
        for member in _unwrap(t):
            if isinstance(member, type) and issubclass(member, msgspec.Struct):
                return member
    return None


def _literal_choices(root: type, segments: list[str | int]) -> list[str]:
    for t in _type_at(root, segments):
        for member in _unwrap(t):
            if typing.get_origin(member) is typing.Literal:
                return [str(a) for a in typing.get_args(member)]
    return []
