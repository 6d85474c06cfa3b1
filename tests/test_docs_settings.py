"""The configuration page's table is generated from `Settings` (docs/hooks/settings_reference.py,
run by `mkdocs build`): every field, under the variable `Settings.from_env` reads, with its
default; and a page naming a `TRACKFLOW_*` variable that is no setting fails the build."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from trackflow.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "settings_reference", ROOT / "docs" / "hooks" / "settings_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(table: str) -> dict[str, list[str]]:
    """Variable -> its cells, for the rows that name one."""
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if cells and (name := re.fullmatch(r"`(TRACKFLOW_\w+)`", cells[0])):
            rows[name.group(1)] = cells
    return rows


def test_every_setting_is_in_the_table_under_the_variable_it_is_read_from(
    hook: ModuleType,
) -> None:
    rows = _rows(hook.settings_reference())
    assert len(rows) == len(Settings.model_fields)
    for field, info in Settings.model_fields.items():
        variable = hook.env_name(field)
        assert variable in rows, variable
        default = rows[variable][2]
        assert default == ("unset" if info.default is None else f"`{info.default}`"), variable
        # The name the table gives is the one the code reads.
        if (info.annotation is str or info.annotation == str | None) and not info.metadata:
            assert getattr(Settings.from_env({variable: "x"}), field) == "x", variable


def test_a_comment_beside_a_field_is_its_note(hook: ModuleType) -> None:
    rows = _rows(hook.settings_reference())
    assert rows["TRACKFLOW_TWILIO_FROM"][3] == "an E.164 sender number"
    assert rows["TRACKFLOW_SENDGRID_API_KEY"][3] == "secret"


def test_a_variable_that_is_no_setting_is_named(hook: ModuleType) -> None:
    page = "TRACKFLOW_STORE_NAME, TRACKFLOW_SLACK_* and TRACKFLOW_CODEC_TOKEN; TRACKFLOW_STORE_LOGO"
    assert hook.unknown_variables(page) == {"TRACKFLOW_STORE_LOGO"}


def test_the_docs_name_only_settings_that_exist(hook: ModuleType) -> None:
    pages = [*(ROOT / "docs").rglob("*.md"), ROOT / "README.md"]
    unknown = {str(p.relative_to(ROOT)): hook.unknown_variables(p.read_text()) for p in pages}
    assert not {page: names for page, names in unknown.items() if names}
