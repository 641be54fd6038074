"""Quoting a template value for where it stands in a /bin/sh command line.

`{{params.x}}` may stand bare (`echo {{params.x}}`), inside double quotes (`echo "x={{params.x}}"`),
inside single quotes, or inside `$(...)`. One quoting for all of them fails: shlex.quote's
single quotes are literal characters inside "...", so `$(touch P)` would run. So the template's
own text is scanned like sh reads it, each `{{ ... }}` gets the quoting filter of its context,
and the contexts where no quoting can be exact (backquotes, comments, here-documents) are
refused with a hint; inside $((...)) only a number is accepted. In every accepted context
/bin/sh receives exactly the value's characters (tests/spec/test_shellquote.py, hypothesis).
"""

from __future__ import annotations

import re
import shlex

import jinja2

PLAIN, DOUBLE, SINGLE = "plain", "double", "single"
REFUSED = {
    "backquote": "use $(...) instead of `...`",
    "comment": "take the placeholder out of the '#' comment",
    "here-document": "pass the value through env: and write $NAME in the here-document",
}
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


class Raw(str):
    """A value marked by `| raw`: substituted into a shell command without quoting."""

    __slots__ = ()


class UnsafeContext(Exception):
    def __init__(self, context: str) -> None:
        super().__init__(context)
        self.context = context


def quote_plain(value: object) -> str:
    return value if isinstance(value, Raw) else shlex.quote(str(value))


def quote_double(value: object) -> str:
    """Inside "...": a backslash keeps its meaning only before $ ` " \\ and newline."""
    if isinstance(value, Raw):
        return value
    text = str(value)
    for ch in '\\$`"':
        text = text.replace(ch, "\\" + ch)
    return text


def quote_single(value: object) -> str:
    """Inside '...': nothing is special but the closing quote: close, escape it, reopen."""
    return value if isinstance(value, Raw) else str(value).replace("'", "'\\''")


def quote_arithmetic(value: object) -> str:
    """Inside $((...)) the shell expands $(...) again and no quoting holds: numbers only."""
    if isinstance(value, Raw):
        return value
    text = str(value)
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"{text[:40]!r} inside $((...)) is not a number (pass it through env:)")
    return text


FILTERS = {
    "_sh_plain": quote_plain,
    "_sh_double": quote_double,
    "_sh_single": quote_single,
    "_sh_arithmetic": quote_arithmetic,
}


class _Scanner:
    """The quoting context at each point of the static text, as sh reads it (approximately:
    enough to place a value; `case` patterns and `${...}` do not change a value's quoting)."""

    def __init__(self) -> None:
        self.stack: list[str] = [PLAIN]
        self.prev = " "  # the previous character: '#' starts a comment only at a word's start
        self.heredocs: list[str] = []  # delimiters whose bodies start at the next line
        self.line = ""  # the current line of a here-document body

    def context(self) -> str:
        return self.stack[-1]

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            i = self._step(text, i)

    def _step(self, text: str, i: int) -> int:
        ch, top, nxt = text[i], self.stack[-1], text[i + 1 : i + 3]
        self.prev, prev = ch, self.prev
        if top == "here-document":
            if ch == "\n":
                if self.line.lstrip("\t") == self.heredocs[0]:
                    self.heredocs.pop(0)
                    if not self.heredocs:
                        self.stack.pop()
                self.line = ""
            else:
                self.line += ch
            return i + 1
        if top == SINGLE:
            if ch == "'":
                self.stack.pop()
            return i + 1
        if top == "comment":
            if ch == "\n":
                self.stack.pop()
                return self._newline(i)
            return i + 1
        if ch == "\\":
            self.prev = "x"
            return i + 2
        if top == "backquote":
            if ch == "`":
                self.stack.pop()
            return i + 1
        if top == "arithmetic":
            if ch == ")" and nxt[:1] == ")":
                self.stack.pop()
                return i + 2
            return i + 1
        if ch == "`":
            self.stack.append("backquote")
        elif ch == "$" and nxt == "((":
            self.stack.append("arithmetic")
            return i + 3
        elif ch == "$" and nxt[:1] == "(":
            self.stack.append("subst")
            return i + 2
        elif top == DOUBLE:
            if ch == '"':
                self.stack.pop()
        elif ch == "'":
            self.stack.append(SINGLE)
        elif ch == '"':
            self.stack.append(DOUBLE)
        elif ch == ")" and top == "subst":
            self.stack.pop()
        elif ch == "#" and prev in " \t\n;&|()":
            self.stack.append("comment")
        elif ch == "<" and nxt[:1] == "<":
            return self._heredoc(text, i + 2)
        elif ch == "\n":
            return self._newline(i)
        return i + 1

    def _heredoc(self, text: str, i: int) -> int:
        if text[i : i + 1] == "-":
            i += 1
        while text[i : i + 1] in (" ", "\t"):
            i += 1
        start = i
        while i < len(text) and text[i] not in " \t\n;&|<>()":
            i += 1
        word = text[start:i].replace("'", "").replace('"', "").replace("\\", "")
        if word:
            self.heredocs.append(word)
        return i

    def _newline(self, i: int) -> int:
        if self.heredocs:
            self.stack.append("here-document")
        return i + 1


def add_context_filters(env: jinja2.Environment, text: str) -> str:
    """`text` with each `{{ expr }}` rewritten to `{{ (expr) | _sh_<context> }}`.

    Raises UnsafeContext for a placeholder where no quoting is exact (see REFUSED)."""
    scanner = _Scanner()
    context = PLAIN
    out: list[str] = []
    inner: list[str] | None = None
    for _line, kind, value in env.lex(text):
        if kind == "variable_begin":
            context = scanner.context()
            if context in REFUSED:
                raise UnsafeContext(context)
            inner = []
            out.append(value)
        elif kind == "variable_end" and inner is not None:
            quoting = "_sh_plain" if context in (PLAIN, "subst") else f"_sh_{context}"
            out.append(f"({''.join(inner)}) | {quoting}{value}")
            inner = None
        elif inner is not None:
            inner.append(value)
        else:
            if kind == "data":
                scanner.feed(value)
            out.append(value)
    return "".join(out)
