"""The size rules of STYLE.md, kept: no file under src/ over 400 lines, no function over 60,
no module using another corral module's private names (``from corral.x import _y``, or
``mod._y`` where ``mod`` is a corral module this module imported).

ALLOWED names a file that may break a rule for now, with the reason; it is empty. A file that
shrank below the limit must leave the list (the test says so), so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60

# path under src/ -> why it may break a size rule for now (the helper splitting it)
ALLOWED: dict[str, str] = {}


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(SRC).as_posix() if path.is_relative_to(SRC) else path.name


def _too_long(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    out = []
    lines = len(text.splitlines())
    if lines > MAX_FILE_LINES:
        out.append(f"{_name(path)}: {lines} lines (> {MAX_FILE_LINES})")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                out.append(
                    f"{_name(path)}:{node.lineno} {node.name}: {length} lines (> {MAX_FUNCTION_LINES})"
                )
    return out


def test_no_file_over_400_lines_and_no_function_over_60() -> None:
    found = {_name(p): _too_long(p) for p in _sources()}
    broken = [line for name, lines in found.items() if name not in ALLOWED for line in lines]
    assert not broken, "split these (STYLE.md: small parts with one job each):\n" + "\n".join(broken)


def test_the_allow_list_names_only_files_still_breaking_a_rule() -> None:
    stale = [name for name in ALLOWED if not (SRC / name).is_file() or not _too_long(SRC / name)]
    assert not stale, f"these keep the rules now (or are gone): take them out of ALLOWED: {stale}"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _is_module(dotted: str) -> bool:
    path = SRC.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _private_uses(path: Path) -> list[str]:
    """Private names of other corral modules this module imports or reads."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: list[str] = []
    modules: set[str] = set()  # local names bound to corral modules
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "corral":
            for alias in node.names:
                if _is_private(alias.name):
                    out.append(f"{_name(path)}:{node.lineno} from {node.module} import {alias.name}")
                elif _is_module(f"{node.module}.{alias.name}"):
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "corral":
                    if any(_is_private(part) for part in alias.name.split(".")[1:]):
                        out.append(f"{_name(path)}:{node.lineno} import {alias.name}")
                    modules.add(alias.asname or "corral")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in modules:
                out.append(f"{_name(path)}:{node.lineno} {ast.unparse(node)}")
    return out


def test_no_module_uses_another_modules_private_names() -> None:
    found = [use for p in _sources() for use in _private_uses(p)]
    assert not found, "make these public (or move them where they are used):\n" + "\n".join(found)


def test_the_checks_see_what_they_look_for(tmp_path: Path) -> None:
    """The checks find a planted long function, a private import and a private attribute."""
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    planted = tmp_path / "probe.py"
    planted.write_text(
        "from corral.spec.load import _convert\nfrom corral.supervisor import proc\n"
        f"def f():\n{body}\n\nproc._x\nself._y\n",
        encoding="utf-8",
    )
    uses = _private_uses(planted)
    assert len(uses) == 2
    assert "import _convert" in uses[0] and "proc._x" in uses[1]
    assert _too_long(planted) == [f"probe.py:3 f: {MAX_FUNCTION_LINES + 1} lines (> {MAX_FUNCTION_LINES})"]
