"""Specs whose values a journal cannot record, or that the parsers choke on: one SpecError
naming the field, never a traceback from the parser, the journal's encoder or len()."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.spec.errors import SpecError
from corral.spec.load import load_spec


def _error(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message


DEPTH = 100_000


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("deep.yaml", "name: x\nprocesses: " + "[" * DEPTH + "]" * DEPTH + "\n"),
        ("deep.json", '{"name": "x", "processes": ' + "[" * DEPTH + "]" * DEPTH + "}"),
        ("deep.toml", 'name = "x"\nprocesses = ' + "[" * DEPTH + "]" * DEPTH + "\n"),
    ],
    ids=["yaml", "json", "toml"],
)
def test_a_deeply_nested_document_is_one_error_not_a_recursion_error(tmp_path: Path, name: str, text: str) -> None:
    assert "nested too deeply" in _error(tmp_path, name, text)
