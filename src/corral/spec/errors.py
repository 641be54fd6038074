"""The one user-facing error of the spec package: file, field path, message, hint, on one line."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SpecError(Exception):
    """A spec that cannot be loaded, validated or rendered.

    `str(e)` is one line, e.g.
    `sweep.yaml: processes[2].after: unknown process 'setpu' (did you mean 'setup'?)`;
    the CLI prints it and exits 2.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        path: str = "",
        hint: str | None = None,
        line: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.path = path
        self.hint = hint
        self.line = line  # 1-based line in `file`, when known

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(f"{self.file}:{self.line}" if self.line is not None else self.file)
        if self.path:
            where.append(self.path)
        text = ": ".join([*where, self.message])
        if self.hint:
            text += f" ({self.hint})"
        # one line, always: a YAML error message or a value may carry newlines
        return " ".join(text.split("\n"))

    def __reduce__(self) -> tuple[object, ...]:
        # keyword-only constructor: pickle via a helper so errors cross process boundaries
        return (_rebuild, (self.message, self.file, self.path, self.hint, self.line))

    def with_file(self, file: str | None) -> SpecError:
        """Attach the file name if the raiser did not know it (returns self)."""
        if self.file is None:
            self.file = file
        return self


def _rebuild(message: str, file: str | None, path: str, hint: str | None, line: int | None) -> SpecError:
    return SpecError(message, file=file, path=path, hint=hint, line=line)


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A hint naming the closest choice, or None when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
