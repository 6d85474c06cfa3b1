"""CSV writers whose text cells a spreadsheet cannot take for a formula.

Excel, LibreOffice and Google Sheets evaluate a cell that starts with `=`, `+`, `-` or `@` (and
one that starts with a tab or a carriage return may be read so once trimmed): a carrier named
`=HYPERLINK(...)` in a report would be a live link, or worse. Every CSV we write goes through
`writer` / `dict_writer`, which put a `'` before such a text cell (OWASP's "CSV injection"
advice): shown as typed, never evaluated. Numbers, and text that is a plain number ("-1.5"), are
written as they are: a negative figure is a number, not a formula.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def safe_cell(value: object) -> object:
    """`value`, with a `'` in front when it is text a spreadsheet would evaluate. A carriage
    return becomes a line feed: a writer whose rows end in "\n" leaves a cell with a bare CR
    unquoted, and a spreadsheet would start a new row (and a new first cell) there."""
    if not isinstance(value, str):
        return value
    text = value.replace("\r\n", "\n").replace("\r", "\n")
    if value.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + text
    return text


class _SafeWriter:
    def __init__(self, out: IO[str], **options: Any) -> None:
        self._writer = csv.writer(out, **options)

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow([safe_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


class _SafeDictWriter:
    def __init__(self, out: IO[str], fieldnames: Sequence[str], **options: Any) -> None:
        self._writer = csv.DictWriter(out, fieldnames=fieldnames, **options)

    def writeheader(self) -> None:
        self._writer.writeheader()

    def writerow(self, row: Mapping[str, object]) -> None:
        self._writer.writerow({key: safe_cell(value) for key, value in row.items()})

    def writerows(self, rows: Iterable[Mapping[str, object]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(out: IO[str], **options: Any) -> _SafeWriter:
    """`csv.writer(out, **options)`, neutralising formula cells."""
    return _SafeWriter(out, **options)


def dict_writer(out: IO[str], fieldnames: Sequence[str], **options: Any) -> _SafeDictWriter:
    """`csv.DictWriter(out, fieldnames, **options)`, neutralising formula cells."""
    return _SafeDictWriter(out, fieldnames, **options)
