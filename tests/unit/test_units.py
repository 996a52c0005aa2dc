from decimal import Decimal

import pytest

from carbon.core import units


def test_money_rounds_to_fen_and_refuses_floats():
    assert units.cny("12.345") == Decimal("12.35")
    assert units.cny_ceil("12.341") == Decimal("12.35")
    assert units.cny_ceil("12.340") == Decimal("12.34")
    with pytest.raises(TypeError):
        units.cny(12.34)
    with pytest.raises(ValueError):
        units.cny("abc")
    with pytest.raises(ValueError):
        units.cny("NaN")


def test_fen_edges_are_exact():
    assert units.to_fen(Decimal("0.01")) == 1
    assert units.to_fen("1999.99") == 199999
    assert units.from_fen(199999) == Decimal("1999.99")
    with pytest.raises(ValueError):
        units.to_fen("0.001")
    with pytest.raises(TypeError):
        units.from_fen(1.5)


def test_carbon_units():
    assert units.kg("30.48") == Decimal("30.480")
    assert units.kg_to_grams("30.4805") == 30481
    assert units.grams_to_kg(30480) == Decimal("30.480")
    assert units.ceil_to_unit(Decimal("30.480")) == Decimal(31)
    assert units.ceil_to_unit(Decimal(30)) == Decimal(30)
    assert units.ceil_to_unit(Decimal("0.2"), Decimal("0.5")) == Decimal("0.5")
    with pytest.raises(ValueError):
        units.ceil_to_unit(Decimal(1), Decimal(0))
