"""CSV for spreadsheets: UTF-8 with a BOM (so Excel reads the Chinese right) and no cell that a
spreadsheet would run as a formula. A text cell starting with = + - @, a tab or a carriage return
gets a leading apostrophe (OWASP's advice); numbers, also negative ones, stay numbers."""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from decimal import Decimal

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def cell(value) -> str:
    """One cell as text: None is empty, Decimal in fixed point, formula-like text neutralized."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    text = str(value)
    if text.startswith(_FORMULA_START) and not _NUMBER.match(text):
        return "'" + text
    return text


def csv_text(header: Iterable[str], rows: Iterable[Iterable]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([cell(name) for name in header])
    writer.writerows([cell(value) for value in row] for row in rows)
    return "\ufeff" + buffer.getvalue()
