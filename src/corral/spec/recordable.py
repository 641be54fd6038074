"""Values a journal can record: the check a parsed spec passes before it is converted.

A spec is recorded whole in the journal's first record (msgpack), so every value in it must
encode there: an integer within 64 bits, a string that is valid Unicode text (no lone
surrogate: Python's stand-in for a byte that was not UTF-8). Found here, such a value is one
line naming its field; found by the journal's encoder, it was a traceback after the task's
directory was made. The walk is iterative: a deeply nested document cannot exhaust the stack.
"""

from __future__ import annotations

from corral.spec.errors import SpecError

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1


def check_recordable(data: object, file: str | None = None) -> None:
    """Raise a SpecError naming the first value of `data` a journal could not record."""
    stack: list[tuple[str, object]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, bool | float) or value is None:
            continue
        if isinstance(value, int):
            if not INT_MIN <= value <= INT_MAX:
                raise SpecError(
                    f"integer {_short(value)} does not fit in 64 bits",
                    file=file,
                    path=path,
                    hint=f"at most {INT_MAX}",
                )
        elif isinstance(value, str):
            _check_text(value, file, path)
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str):
                    _check_text(key, file, path)
                stack.append((_key(path, key), item))
        elif isinstance(value, list | tuple):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))


def _check_text(text: str, file: str | None, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SpecError(
            f"{_short(text)} is not valid UTF-8 text (character {exc.start})",
            file=file,
            path=path,
            hint="a byte that is not UTF-8, or a lone \\udXXX escape",
        ) from None


def _key(path: str, key: object) -> str:
    text = key if isinstance(key, str) else repr(key)
    return f"{path}.{text}" if path else text


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
