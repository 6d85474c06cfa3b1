"""The house's floors: `trackflow` at the bottom, then `activities`, `workflows`, `workers`,
with `starters` on top; nothing below `starters` reaches up into it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BELOW_STARTERS = ("trackflow", "activities", "workflows", "workers")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", BELOW_STARTERS)
def test_nothing_below_starters_imports_it(package: str) -> None:
    upward = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for module in _imported_modules(path)
        if module == "starters" or module.startswith("starters.")
    }
    assert not upward, f"move what these need below starters/: {sorted(upward)}"
