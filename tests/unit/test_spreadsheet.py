"""CSV cells a spreadsheet cannot run: formula-like text gets an apostrophe, numbers stay numbers."""
from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from carbon.core.spreadsheet import cell, csv_text


@pytest.mark.parametrize("value, shown", [
    ("=1+1", "'=1+1"), ("+86 138", "'+86 138"), ("-x", "'-x"), ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"), ("a=1", "a=1"), ("首届论坛", "首届论坛"), ("-2.85", "-2.85"), ("-3", "-3"),
    (Decimal("-2.85"), "-2.85"), (Decimal("1E+3"), "1000"), (Decimal("0.10"), "0.10"), (None, ""), (7, "7"),
])
def test_cells(value, shown):
    assert cell(value) == shown


def test_the_text_has_a_bom_and_quotes_what_needs_it():
    text = csv_text(["名称 / name", "amount"], [['=cmd|"/C calc"!A0, 逗号', Decimal("12.30")]])
    assert text.startswith("\ufeff")
    assert list(csv.reader(io.StringIO(text[1:]))) == [["名称 / name", "amount"], ["'=cmd|\"/C calc\"!A0, 逗号", "12.30"]]
