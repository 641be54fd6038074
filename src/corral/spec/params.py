"""The parameters of every job of an ensemble, computed by index instead of stored.

Job i of a matrix is found by mixed-radix decoding of i (the first key varies slowest, as in
itertools.product), so a 100,000-job matrix costs a few hundred bytes. A params_file is read once
into columns (array('q') for integers, array('d') for floats, a list of shared strings otherwise),
never a dict per row. With both, every file row is combined with every matrix point (file rows
vary slowest). Jobs submitted at run time are appended as `extra` rows after the base jobs.

Measured (tests/spec/test_params.py::test_memory_of_100k_jobs, tracemalloc): a 100,000-row
CSV with an int, a float and a repeated string column holds 2.4 MB (peak while loading 2.5 MB,
the file is streamed); the same as JSON lines the same; a distinct string per row adds ~60 bytes
a row (7.5 MB for 100,000); a 100,000-job matrix about 1.3 KB.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import cast

from corral.spec.errors import SpecError
from corral.spec.model import Ensemble, Range

_INT64 = (-(2**63), 2**63 - 1)
MAX_JOBS = 2**31 - 1  # job numbers are 31-bit everywhere (core's arrays, the control protocol)


def _number_or_text(text: str) -> object:
    """An int or float when `text` is exactly how Python writes that number, else the text.

    "007", "1_000", "0.10" and "1e3" stay strings: rendering the number would change the text.
    """
    if text and (text[0].isdigit() or text[0] in "+-."):
        try:
            number: int | float = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return text
            if not math.isfinite(number):
                return text
        if str(number) == text:
            return number
    return text


class _ColumnBuilder:
    """Collects one column as compactly as its values allow, while streaming.

    Starts as array('q') for ints or array('d') for floats and falls back to a list on the first
    value that does not fit; repeated strings share one object (up to _SHARED distinct ones).
    """

    __slots__ = ("data", "kind", "shared")
    _SHARED = 4096

    def __init__(self) -> None:
        self.kind = ""
        self.data: array[int] | array[float] | list[object] = []
        self.shared: dict[str, str] = {}

    def append(self, value: object) -> None:
        kind = self.kind
        if kind == "q" and type(value) is int and _INT64[0] <= value <= _INT64[1]:
            cast("array[int]", self.data).append(value)
            return
        if kind == "d" and type(value) is float:
            cast("array[float]", self.data).append(value)
            return
        if kind == "":
            if type(value) is int and _INT64[0] <= value <= _INT64[1]:
                self.kind, self.data = "q", array("q", [value])
                return
            if type(value) is float:
                self.kind, self.data = "d", array("d", [value])
                return
        if kind != "list":
            self.kind, self.data = "list", list(self.data)
        if isinstance(value, str):
            found = self.shared.get(value)
            if found is not None:
                value = found
            elif len(self.shared) < self._SHARED:
                self.shared[value] = value
        cast("list[object]", self.data).append(value)

    def build(self) -> Sequence[object]:
        self.shared = {}
        return self.data


def _column(values: Iterable[object]) -> Sequence[object]:
    builder = _ColumnBuilder()
    for v in values:
        builder.append(v)
    return builder.build()


class ParamTable:
    """Rows of named values stored by column: a shared header and one sequence per column."""

    __slots__ = ("columns", "header", "rows")

    def __init__(self, header: tuple[str, ...], columns: tuple[Sequence[object], ...]) -> None:
        self.header = header
        self.columns = columns
        self.rows = len(columns[0]) if columns else 0

    @classmethod
    def from_rows(cls, header: tuple[str, ...], rows: Iterable[Sequence[object]]) -> ParamTable:
        columns = [_ColumnBuilder() for _ in header]
        for row in rows:
            for col, value in zip(columns, row, strict=True):
                col.append(value)
        return cls(header, tuple(c.build() for c in columns))

    def row(self, i: int) -> tuple[object, ...]:
        return tuple(c[i] for c in self.columns)


def _length(axis: Sequence[object]) -> int:
    """len(axis), also for a range too long for len() (more than 2**63 - 1 numbers)."""
    if isinstance(axis, range):
        return max(0, -((axis.start - axis.stop) // axis.step))
    return len(axis)


class ParamSpace:
    """A sequence of job parameters: `space[i]` is the dict of job i, `len(space)` the count."""

    __slots__ = ("_axes", "_base", "_keys", "_radix", "extra", "table")

    def __init__(
        self,
        matrix: Mapping[str, Sequence[object]] | None = None,
        table: ParamTable | None = None,
    ) -> None:
        matrix = dict(matrix or {})
        if table is not None:
            both = set(table.header) & set(matrix)
            if both:
                raise ValueError(f"parameter {sorted(both)[0]!r} is both in the file and the matrix")
        self.table = table
        self._keys = tuple(matrix)
        self._axes = tuple(matrix.values())
        self._radix = tuple(_length(a) for a in self._axes)
        base = table.rows if table is not None else 1
        for n in self._radix:
            base *= n
        self._base = base  # may pass MAX_JOBS here; from_ensemble refuses such a space
        self.extra: list[dict[str, object]] = []

    # -- building --

    @classmethod
    def from_ensemble(cls, ens: Ensemble, base_dir: str | None = None, file: str | None = None) -> ParamSpace:
        """The jobs of `ens`; a relative params_file is found in `base_dir` (the spec's dir)."""
        matrix: dict[str, Sequence[object]] = {}
        for key, values in ens.params.items():
            matrix[key] = range(*values.range) if isinstance(values, Range) else values
        table = None
        if ens.params_file:
            path = Path(ens.params_file)
            if not path.is_absolute() and base_dir is not None:
                path = Path(base_dir) / path
            table = load_params_file(path, shown=ens.params_file, spec_file=file)
        try:
            space = cls(matrix, table)
        except ValueError as exc:
            raise SpecError(str(exc), file=file, path="params_file") from None
        if space.base > MAX_JOBS:
            raise SpecError(
                f"makes {space.base} jobs, more than {MAX_JOBS}",
                file=file,
                path="params",
                hint="a job is numbered in 31 bits; split it into several ensembles",
            )
        return space

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, object]]) -> ParamSpace:
        """Jobs given one dict each (rows must share their keys)."""
        if not rows:
            return cls(table=ParamTable((), ()))
        header = tuple(rows[0])
        return cls(table=ParamTable.from_rows(header, (tuple(r[k] for k in header) for r in rows)))

    @classmethod
    def single(cls, params: Mapping[str, object]) -> ParamSpace:
        """One job with these parameters."""
        space = cls(table=ParamTable((), ()))
        space.add([params])
        return space

    def add(self, rows: Iterable[Mapping[str, object]]) -> range:
        """Append dynamically submitted jobs; returns their indexes."""
        start = len(self)
        self.extra.extend(dict(r) for r in rows)
        return range(start, len(self))

    # -- reading --

    @property
    def keys(self) -> tuple[str, ...]:
        """The parameter names of the base jobs (file columns, then matrix keys)."""
        head = self.table.header if self.table is not None else ()
        return (*head, *self._keys)

    @property
    def base(self) -> int:
        """How many jobs the spec defines (before any dynamic submission)."""
        return self._base

    def __len__(self) -> int:
        return self._base + len(self.extra)

    def __getitem__(self, index: int) -> dict[str, object]:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"job {index} out of range (0..{n - 1})")
        if index >= self._base:
            return dict(self.extra[index - self._base])
        values: list[object] = [None] * len(self._axes)
        rest = index
        for k in range(len(self._axes) - 1, -1, -1):  # last key varies fastest
            rest, digit = divmod(rest, self._radix[k])
            values[k] = self._axes[k][digit]
        out: dict[str, object] = {}
        if self.table is not None:
            out.update(zip(self.table.header, self.table.row(rest), strict=True))
        out.update(zip(self._keys, values, strict=True))
        return out

    def __iter__(self) -> Iterator[dict[str, object]]:
        return self.rows(0, len(self))

    def rows(self, start: int, stop: int) -> Iterator[dict[str, object]]:
        """`self[i]` for i in [start, stop) (clipped to the jobs there are), built in bulk:
        one walk of itertools.product over the file's rows and the matrix, in the order of
        __getitem__ (the file's row varies slowest, the last matrix key fastest), in C
        (map, zip, islice) instead of a mixed-radix division per job: `status --jobs` of a
        100,000-job ensemble lists every job."""
        start, stop = max(0, start), min(stop, len(self))
        base_stop = max(start, min(stop, self._base))
        first, last = max(start, self._base) - self._base, max(stop, self._base) - self._base
        extra = (dict(row) for row in self.extra[first:last])
        if self.table is None:
            keys: tuple[str, ...] = self._keys
            values: Iterator[tuple[object, ...]] = itertools.product(*self._axes)
        elif not self._axes:
            keys = self.table.header
            values = zip(*self.table.columns, strict=True)
        else:
            keys = (*self.table.header, *self._keys)
            walk = itertools.product(zip(*self.table.columns, strict=True), *self._axes)
            values = ((*row, *combo) for row, *combo in walk)
        if start > base_stop - start:  # a short page far in: skipping to it would cost more
            return itertools.chain(map(self.__getitem__, range(start, base_stop)), extra)
        base = map(dict, map(zip, itertools.repeat(keys), itertools.islice(values, start, base_stop)))
        return itertools.chain(base, extra)


# -- params files -----------------------------------------------------------------------------


def load_params_file(
    path: str | os.PathLike[str], shown: str | None = None, spec_file: str | None = None
) -> ParamTable:
    """Read a CSV (header row) or JSON lines file; errors name `shown` (the path as written).

    Streamed line by line into columns: a 100,000-row file never exists as 100,000 dicts.
    """
    path = Path(path)
    label = shown or str(path)
    try:
        # utf-8-sig: spreadsheets write a BOM; newline="": the csv module handles line ends
        with open(path, encoding="utf-8-sig", newline="") as f:
            suffix = path.suffix.lower()
            jsonl = suffix in (".jsonl", ".ndjson", ".json")
            if not jsonl and suffix != ".csv":
                jsonl = f.read(4096).lstrip().startswith("{")
                f.seek(0)
            return parse_jsonl(f, label) if jsonl else parse_csv(f, label)
    except FileNotFoundError:
        raise SpecError(f"no such file: {path}", file=spec_file, path="params_file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read {path}: {exc}", file=spec_file, path="params_file") from None


def _check_header(names: Sequence[str], label: str, line: int) -> None:
    seen: set[str] = set()
    for name in names:
        if not name.isidentifier():
            raise SpecError(f"parameter name {name!r} is not an identifier", file=label, line=line)
        if name in seen:
            raise SpecError(f"duplicate parameter {name!r}", file=label, line=line)
        seen.add(name)


def _lines(source: str | Iterable[str]) -> Iterable[str]:
    return io.StringIO(source, newline="") if isinstance(source, str) else source


def parse_csv(source: str | Iterable[str], label: str = "<csv>") -> ParamTable:
    """A table from CSV text or lines: a header row of names, then one job per row.

    Cells that are exactly how Python writes an int or float become numbers; the rest stay text.
    """
    reader = csv.reader(_lines(source), strict=True)
    header: tuple[str, ...] | None = None
    columns: list[_ColumnBuilder] = []
    try:
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue  # blank lines are not jobs
            if header is None:
                header = tuple(c.strip() for c in row)
                _check_header(header, label, reader.line_num)
                columns = [_ColumnBuilder() for _ in header]
                continue
            if len(row) != len(header):
                raise SpecError(
                    f"{len(row)} fields, the header has {len(header)}",
                    file=label,
                    line=reader.line_num,
                )
            for col, value in zip(columns, row, strict=True):
                col.append(_number_or_text(value))
    except csv.Error as exc:
        raise SpecError(f"invalid CSV: {exc}", file=label, line=reader.line_num) from None
    if header is None:
        raise SpecError("empty; expected a header row of parameter names", file=label)
    return ParamTable(header, tuple(c.build() for c in columns))


def parse_jsonl(source: str | Iterable[str], label: str = "<jsonl>") -> ParamTable:
    """A table from JSON lines: one object per line, all with the same keys."""
    header: tuple[str, ...] | None = None
    keyset: frozenset[str] = frozenset()
    first = 0
    columns: list[_ColumnBuilder] = []
    for number, line in enumerate(_lines(source), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SpecError(f"invalid JSON: {exc.msg}", file=label, line=number) from None
        if not isinstance(obj, dict):
            raise SpecError(f"expected an object, got {type(obj).__name__}", file=label, line=number)
        if header is None:
            header, keyset, first = tuple(obj), frozenset(obj), number
            _check_header(header, label, number)
            columns = [_ColumnBuilder() for _ in header]
        elif obj.keys() != keyset:
            missing = sorted(keyset - obj.keys())
            extra = sorted(obj.keys() - keyset)
            detail = ", ".join([*(f"missing {k!r}" for k in missing), *(f"extra {k!r}" for k in extra)])
            raise SpecError(f"keys differ from line {first}: {detail}", file=label, line=number)
        for col, key in zip(columns, header, strict=True):
            col.append(obj[key])
    if header is None:
        raise SpecError("empty; expected one JSON object per line", file=label)
    return ParamTable(header, tuple(c.build() for c in columns))
