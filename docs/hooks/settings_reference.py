"""mkdocs hook: the configuration page's table of every setting, generated from
`trackflow.settings.Settings` (names, types, defaults, the comments beside the fields), so it
cannot drift from the code; and a check that every `TRACKFLOW_*` variable a page names exists.
"""

from __future__ import annotations

import ast
import io
import logging
import re
import sys
import tokenize
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the checkout's code, whichever copy the venv installed
    sys.path.insert(0, str(ROOT))

from pydantic.fields import FieldInfo  # noqa: E402

from trackflow.settings import SUPERVISOR_FD_ENV, Settings  # noqa: E402

MARKER = "<!-- settings-reference -->"
PREFIX = "TRACKFLOW_"
# Variables read outside Settings: by the codec server, the supervisor's children, the tests.
OTHER_VARIABLES = {
    "TRACKFLOW_CODEC_TOKEN",
    SUPERVISOR_FD_ENV,
    "TRACKFLOW_TEST_POSTGRES_DSN",
    "TRACKFLOW_SCREENSHOTS_DIR",
}
log = logging.getLogger(f"mkdocs.hooks.{__name__}")


def env_name(field: str) -> str:
    """As `Settings.from_env` reads it."""
    return f"{PREFIX}{field.upper()}"


def _comments() -> tuple[dict[str, str], dict[str, str]]:
    """The comment on each field's line, and the block of comment lines above a field (which
    speaks of the fields from it on)."""
    source = Path(sys.modules[Settings.__module__].__file__ or "").read_text()
    by_line: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            by_line[token.start[0]] = token.string.lstrip("#").strip()
    cls = next(
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.ClassDef) and node.name == Settings.__name__
    )
    own: dict[str, str] = {}
    above: dict[str, str] = {}
    previous_end = cls.lineno
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            end = node.end_lineno or node.lineno
            block = [by_line[n] for n in range(previous_end + 1, node.lineno) if n in by_line]
            if block:
                above[node.target.id] = " ".join(block)
            if end in by_line:
                own[node.target.id] = by_line[end]
            previous_end = end
    return own, above


def _type(info: FieldInfo) -> str:
    shown = re.sub(r"\b(?:typing|pathlib|trackflow\.settings)\.", "", repr(info.annotation))
    shown = shown.replace("<class '", "").replace("'>", "").replace("NoneType", "None")
    shown = re.sub(r"^Optional\[(.*)\]$", r"\1 | None", shown)
    bounds = [
        f"{symbol} {getattr(meta, name)}"
        for meta in info.metadata
        for name, symbol in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"))
        if getattr(meta, name, None) is not None
    ]
    return shown + (f" ({', '.join(bounds)})" if bounds else "")


def _default(info: FieldInfo) -> str:
    value: Any = info.default
    if value is None:
        return "unset"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_reference() -> str:
    """The Markdown table: one row per `Settings` field, in its order; a comment that speaks
    of the fields below it is a row of its own."""
    own, above = _comments()
    rows = ["| variable | type | default | note |", "|---|---|---|---|"]
    for field, info in Settings.model_fields.items():
        if field in above:
            rows.append(f"| *{_cell(above[field])}* | | | |")
        note = "; ".join(
            text for text in ("secret" if info.repr is False else "", own.get(field, "")) if text
        )
        rows.append(
            f"| `{env_name(field)}` | {_cell(_type(info))} | {_cell(_default(info))} | "
            f"{_cell(note)} |"
        )
    return "\n".join(rows)


def unknown_variables(markdown: str) -> set[str]:
    """`TRACKFLOW_*` names in `markdown` that are no setting (a prefix of some, such as
    `TRACKFLOW_SLACK_*`, counts as named)."""
    settings = {env_name(field) for field in Settings.model_fields}
    named = set(re.findall(r"\bTRACKFLOW_[A-Z0-9_]*[A-Z0-9]\b|\bTRACKFLOW_[A-Z0-9_]+_", markdown))
    return {
        name
        for name in named - settings - OTHER_VARIABLES
        if not any(setting.startswith(name) for setting in settings)
    }


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    for name in sorted(unknown_variables(markdown)):
        log.warning("%s names %s, which Settings has not", page.file.src_path, name)
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, settings_reference())
    return markdown
