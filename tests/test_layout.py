"""The house's floors: `trackflow` at the bottom, then `activities`, `workflows`, `workers`,
with `starters` on top; nothing below `starters` reaches up into it. The development stack
(`devstack/`) stands outside the product's package, beneath `starters`: its development
commands import it when they run, never when a module loads, and it imports none of them."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parent.parent
BELOW_STARTERS = ("trackflow", "activities", "workflows", "workers")
PRODUCT = (*BELOW_STARTERS, "starters")


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


def _module_level_imports(path: Path) -> set[str]:
    """What `path` imports when it loads (not inside a function or class)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _is_devstack(module: str) -> bool:
    return module == "devstack" or module.startswith("devstack.")


@pytest.mark.parametrize("package", BELOW_STARTERS)
def test_nothing_below_starters_imports_the_devstack(package: str) -> None:
    upward = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for module in _imported_modules(path)
        if _is_devstack(module)
    }
    assert not upward, f"the product below starters/ must not need devstack/: {sorted(upward)}"


def test_the_devstack_does_not_import_the_entry_points_that_start_it() -> None:
    upward = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((ROOT / "devstack").rglob("*.py"))
        for module in _imported_modules(path)
        if module.split(".")[0] in ("starters", "workers", "bench", "tests")
    }
    assert not upward, f"starters/ hands the devstack what it needs: {sorted(upward)}"


def test_starters_import_the_devstack_only_inside_development_commands() -> None:
    loading = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((ROOT / "starters").rglob("*.py"))
        for module in _module_level_imports(path)
        if _is_devstack(module)
    }
    assert not loading, f"import these inside the command that needs them: {sorted(loading)}"


def test_every_product_module_loads_without_the_devstack() -> None:
    """As installed from the wheel: `devstack` cannot be imported."""
    script = (
        "import importlib, pkgutil, sys\n"
        "sys.modules['devstack'] = None\n"
        f"for package in {PRODUCT!r}:\n"
        "    root = importlib.import_module(package)\n"
        "    for module in pkgutil.walk_packages(root.__path__, package + '.'):\n"
        "        importlib.import_module(module.name)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_the_wheel_holds_the_product_and_not_the_devstack() -> None:
    """The packages pyproject.toml gives setuptools (the wheel's and the editable install's)."""
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    packages = set(find_packages(str(ROOT), include=find["find"]["include"]))
    assert {"trackflow", "activities", "workflows", "workers", "starters"} <= packages
    assert not {p for p in packages if _is_devstack(p) or p.startswith("tests")}
