"""Parameter spaces: product order by index, files by column, dynamic rows, memory."""

from __future__ import annotations

import itertools
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.spec import Ensemble, JobTemplate, ParamSpace, Range, SpecError
from corral.spec.params import ParamTable, load_params_file, parse_csv, parse_jsonl

JOB = JobTemplate(cmd="t")


def expected_product(matrix: dict[str, list[object]]) -> list[dict[str, object]]:
    return [dict(zip(matrix, values, strict=True)) for values in itertools.product(*matrix.values())]


# -- matrix -----------------------------------------------------------------------------------


def test_order_equals_itertools_product() -> None:
    ens = Ensemble(
        name="e", job=JOB, params={"a": ("x", "y", "z"), "b": Range(range=(0, 4)), "c": (True, 1.5)}
    )
    space = ParamSpace.from_ensemble(ens)
    want = expected_product({"a": ["x", "y", "z"], "b": list(range(4)), "c": [True, 1.5]})
    assert len(space) == 24
    assert list(space) == want
    assert space[0] == {"a": "x", "b": 0, "c": True}  # first key varies slowest
    assert space[1] == {"a": "x", "b": 0, "c": 1.5}
    assert space[-1] == want[-1]


def test_no_params_is_one_empty_job() -> None:
    space = ParamSpace.from_ensemble(Ensemble(name="e", job=JOB))
    assert len(space) == 1 and space[0] == {}


def test_out_of_range() -> None:
    space = ParamSpace({"a": (1, 2)})
    with pytest.raises(IndexError):
        space[2]
    with pytest.raises(IndexError):
        space[-3]


matrices = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True),
    st.lists(
        st.one_of(st.integers(), st.text(max_size=3), st.floats(allow_nan=False)),
        min_size=1,
        max_size=4,
    ),
    max_size=4,
)


@given(matrices)
def test_property_space_is_the_product(matrix: dict[str, list[object]]) -> None:
    space = ParamSpace({k: tuple(v) for k, v in matrix.items()})
    want = expected_product(matrix)
    assert len(space) == len(want)
    assert [space[i] for i in range(len(space))] == want


@given(st.integers(-20, 20), st.integers(-20, 20), st.integers(-5, 5).filter(bool))
def test_property_range_expands_like_python(start: int, stop: int, step: int) -> None:
    ens = Ensemble(name="e", job=JOB, params={"i": Range(range=(start, stop, step))})
    space = ParamSpace.from_ensemble(ens)
    assert [row["i"] for row in space] == list(range(start, stop, step))


@given(matrices, st.data())
def test_property_index_round_trips(matrix: dict[str, list[object]], data: st.DataObject) -> None:
    space = ParamSpace({k: tuple(v) for k, v in matrix.items()})
    i = data.draw(st.integers(0, len(space) - 1))
    assert space[i] == space[i - len(space)]  # negative indexes like a list


@given(
    matrices,
    st.lists(st.tuples(st.integers(), st.text(max_size=2)), max_size=4),
    st.integers(0, 3),
    st.data(),
)
def test_property_rows_are_the_indexed_jobs(
    matrix: dict[str, list[object]], file_rows: list[tuple[object, ...]], extra: int, data: st.DataObject
) -> None:
    """rows(start, stop) builds in bulk what space[i] builds one by one: matrix, a params
    file's table (or none), dynamically added jobs, any bounds (clipped like a slice)."""
    table = ParamTable.from_rows(("f_a", "f_b"), file_rows) if file_rows or data.draw(st.booleans()) else None
    space = ParamSpace({k: tuple(v) for k, v in matrix.items()}, table)
    space.add([{"added": i} for i in range(extra)])
    n = len(space)
    start = data.draw(st.integers(-2, n + 2))
    stop = data.draw(st.integers(-2, n + 2))
    assert list(space.rows(start, stop)) == [space[i] for i in range(max(start, 0), min(stop, n))]
    assert list(space) == [space[i] for i in range(n)]


def test_rows_far_into_a_huge_matrix_do_not_walk_to_it() -> None:
    space = ParamSpace({"a": range(10**6), "b": range(10**6)})
    assert list(space.rows(10**12 - 2, 10**12 + 5)) == [
        {"a": 10**6 - 1, "b": 10**6 - 2},
        {"a": 10**6 - 1, "b": 10**6 - 1},
    ]


def test_huge_matrix_is_not_materialised() -> None:
    space = ParamSpace({"a": range(10**6), "b": range(10**6)})
    assert len(space) == 10**12
    assert space[10**12 - 1] == {"a": 10**6 - 1, "b": 10**6 - 1}


# -- dynamic rows ------------------------------------------------------------------------------


def test_add_appends_after_base_jobs() -> None:
    space = ParamSpace({"a": (1, 2)})
    new = space.add([{"a": 9, "role": "client"}, {"a": 10}])
    assert new == range(2, 4)
    assert len(space) == 4 and space.base == 2
    assert space[2] == {"a": 9, "role": "client"} and space[3] == {"a": 10}
    space[2]["a"] = 0  # a copy: the space is not changed through it
    assert space[2]["a"] == 9
    assert space.add([]) == range(4, 4)


def test_single() -> None:
    space = ParamSpace.single({"role": "client", "n": 1})
    assert len(space) == 1 and space[0] == {"role": "client", "n": 1}


def test_from_rows() -> None:
    space = ParamSpace.from_rows([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])
    assert list(space) == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert len(ParamSpace.from_rows([])) == 0


# -- CSV ---------------------------------------------------------------------------------------


def test_csv_values_numbers_when_faithful() -> None:
    table = parse_csv("name,value,id,ratio,big\nalpha,1,007,0.10,1e3\n\nbeta,-2,8,2.5,12345678901234567890\n")
    space = ParamSpace(table=table)
    assert space[0] == {"name": "alpha", "value": 1, "id": "007", "ratio": "0.10", "big": "1e3"}
    assert space[1] == {
        "name": "beta",
        "value": -2,
        "id": 8,
        "ratio": 2.5,
        "big": 12345678901234567890,
    }


def test_csv_quoting_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_bytes('\ufeffa,b\n"x, y","multi\nline"\n'.encode())
    table = load_params_file(path)
    assert table.header == ("a", "b")
    assert ParamSpace(table=table)[0] == {"a": "x, y", "b": "multi\nline"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a,b\n1,2\n3\n", "runs.csv:3: 1 fields, the header has 2"),
        ("a,b\n1,2\n\n1,2,3\n", "runs.csv:4: 3 fields, the header has 2"),
        ("a,a\n1,2\n", "runs.csv:1: duplicate parameter 'a'"),
        ("a,b c\n1,2\n", "runs.csv:1: parameter name 'b c' is not an identifier"),
        ("", "runs.csv: empty; expected a header row of parameter names"),
        ('a\n"unterminated\n', "runs.csv:2: invalid CSV: unexpected end of data"),
    ],
)
def test_csv_errors_name_file_and_line(text: str, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_csv(text, "runs.csv")
    assert str(info.value) == expected


def test_csv_without_rows_is_zero_jobs() -> None:
    assert len(ParamSpace(table=parse_csv("a,b\n"))) == 0


# -- JSON lines --------------------------------------------------------------------------------


def test_jsonl_values_keep_json_types() -> None:
    table = parse_jsonl(
        '{"n": 1, "x": 0.5, "s": "a", "flag": true, "l": [1, 2]}\n\n'
        '{"x": 1.5, "n": 2, "s": "b", "flag": false, "l": []}\n'
    )
    assert list(ParamSpace(table=table)) == [
        {"n": 1, "x": 0.5, "s": "a", "flag": True, "l": [1, 2]},
        {"n": 2, "x": 1.5, "s": "b", "flag": False, "l": []},
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"n": 1}\n{"n": 2\n', "runs.jsonl:2: invalid JSON: Expecting ',' delimiter"),
        ('{"n": 1}\n[1]\n', "runs.jsonl:2: expected an object, got list"),
        (
            '{"n": 1, "m": 2}\n\n{"n": 1, "k": 3}\n',
            "runs.jsonl:3: keys differ from line 1: missing 'm', extra 'k'",
        ),
        ('{"a b": 1}\n', "runs.jsonl:1: parameter name 'a b' is not an identifier"),
        ("\n\n", "runs.jsonl: empty; expected one JSON object per line"),
    ],
)
def test_jsonl_errors_name_file_and_line(text: str, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_jsonl(text, "runs.jsonl")
    assert str(info.value) == expected


# -- files from an ensemble -------------------------------------------------------------------


def test_params_file_relative_to_spec_dir(tmp_path: Path) -> None:
    (tmp_path / "runs.jsonl").write_text('{"n": 1}\n{"n": 2}\n')
    ens = Ensemble(name="e", job=JOB, params_file="runs.jsonl")
    assert list(ParamSpace.from_ensemble(ens, base_dir=str(tmp_path))) == [{"n": 1}, {"n": 2}]


def test_params_file_format_sniffed_without_known_suffix(tmp_path: Path) -> None:
    (tmp_path / "runs.txt").write_text('{"n": 1}\n')
    (tmp_path / "grid.dat").write_text("n\n1\n")
    assert load_params_file(tmp_path / "runs.txt").header == ("n",)
    assert load_params_file(tmp_path / "grid.dat").header == ("n",)


def test_params_file_combined_with_matrix(tmp_path: Path) -> None:
    (tmp_path / "runs.csv").write_text("name,value\nalpha,1\nbeta,2\n")
    ens = Ensemble(name="e", job=JOB, params={"seed": Range(range=(3,))}, params_file="runs.csv")
    space = ParamSpace.from_ensemble(ens, base_dir=str(tmp_path))
    assert len(space) == 6
    assert space.keys == ("name", "value", "seed")
    assert space[0] == {"name": "alpha", "value": 1, "seed": 0}
    assert space[4] == {"name": "beta", "value": 2, "seed": 1}  # file rows vary slowest


def test_params_file_errors(tmp_path: Path) -> None:
    ens = Ensemble(name="e", job=JOB, params_file="missing.csv")
    with pytest.raises(SpecError, match=r"^sweep.yaml: params_file: no such file: .*missing.csv$"):
        ParamSpace.from_ensemble(ens, base_dir=str(tmp_path), file="sweep.yaml")
    (tmp_path / "runs.csv").write_text("seed\n1\n")
    clash = Ensemble(name="e", job=JOB, params={"seed": (1,)}, params_file="runs.csv")
    with pytest.raises(SpecError, match="'seed' is both in the file and the matrix"):
        ParamSpace.from_ensemble(clash, base_dir=str(tmp_path))
    (tmp_path / "bad.csv").write_text("a,b\n1\n")
    with pytest.raises(SpecError, match=r"^bad.csv:2: 1 fields, the header has 2$"):
        ParamSpace.from_ensemble(Ensemble(name="e", job=JOB, params_file="bad.csv"), base_dir=str(tmp_path))


# -- memory -----------------------------------------------------------------------------------


def test_memory_of_100k_jobs(tmp_path: Path) -> None:
    """100,000 jobs stay well under 20 MB, while loading too (not only once loaded)."""
    csv_path = tmp_path / "runs.csv"
    with open(csv_path, "w") as f:
        f.write("seed,alpha,kind\n")
        for i in range(100_000):
            f.write(f"{i},{i / 7},{('small', 'large', 'huge')[i % 3]}\n")
    tracemalloc.start()
    space = ParamSpace(table=load_params_file(csv_path))
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{csv_path.name}: held {held / 1e6:.1f} MB, peak {peak / 1e6:.1f} MB")
    assert len(space) == 100_000
    assert held < 5e6 and peak < 10e6  # measured: 2.4 MB held, 2.5 MB peak (JSON lines: same)
    tracemalloc.start()
    matrix = ParamSpace({"a": tuple(range(100)), "b": range(1000)})
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(matrix) == 100_000 and held < 10_000  # measured: ~1.3 KB
    assert space[99_999] == {"seed": 99_999, "alpha": 99_999 / 7, "kind": "small"}
