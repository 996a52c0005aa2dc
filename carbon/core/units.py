"""Money and carbon units. Decimal inside; integer fen and grams only at the edges.

Money is CNY as ``Decimal`` with two places. Carbon is integer grams of CO2e, or
``Decimal`` kilograms with three places. Floats are refused everywhere.
"""
from __future__ import annotations

import re
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation

CNY_PLACES = Decimal("0.01")
KG_PLACES = Decimal("0.001")
GRAMS_PER_KG = 1000
FEN_PER_YUAN = 100
_EXPONENT_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?[eE][-+]?\d+(?![\w.])")


def to_decimal(value: Decimal | int | str) -> Decimal:
    """Exact Decimal from an int, a string or a Decimal; floats are refused."""
    if isinstance(value, (bool, float)):
        raise TypeError(f"refusing inexact value {value!r}: use Decimal, int or str")
    try:
        result = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {value!r}") from exc
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def cny(value: Decimal | int | str) -> Decimal:
    """CNY amount rounded half-up to the fen."""
    return to_decimal(value).quantize(CNY_PLACES, rounding=ROUND_HALF_UP)


def cny_ceil(value: Decimal | int | str) -> Decimal:
    """CNY amount rounded up to the fen (what we charge is never below the price)."""
    return to_decimal(value).quantize(CNY_PLACES, rounding=ROUND_CEILING)


def to_fen(amount: Decimal | int | str) -> int:
    """Integer fen for WeChat Pay; the amount must already be whole fen."""
    value = to_decimal(amount)
    if value != value.quantize(CNY_PLACES):
        raise ValueError(f"{value} CNY is not a whole number of fen")
    return int(value * FEN_PER_YUAN)


def from_fen(fen: int) -> Decimal:
    if not isinstance(fen, int) or isinstance(fen, bool):
        raise TypeError("fen must be an int")
    return (Decimal(fen) / FEN_PER_YUAN).quantize(CNY_PLACES)


def kg(value: Decimal | int | str) -> Decimal:
    """Kilograms of CO2e with three places (gram precision), rounded half-up."""
    return to_decimal(value).quantize(KG_PLACES, rounding=ROUND_HALF_UP)


def kg_to_grams(value: Decimal | int | str) -> int:
    return int(kg(value) * GRAMS_PER_KG)


def grams_to_kg(grams: int) -> Decimal:
    if not isinstance(grams, int) or isinstance(grams, bool):
        raise TypeError("grams must be an int")
    return (Decimal(grams) / GRAMS_PER_KG).quantize(KG_PLACES)


def ceil_to_unit(value_kg: Decimal, unit_kg: Decimal = Decimal(1)) -> Decimal:
    """Round kilograms up to a whole number of sale units (never below the input)."""
    value = to_decimal(value_kg)
    unit = to_decimal(unit_kg)
    if unit <= 0:
        raise ValueError("unit must be positive")
    units = (value / unit).to_integral_value(rounding=ROUND_CEILING)
    return units * unit


def fixed(value: Decimal | int) -> str:
    """A decimal as people write it: ``1000``, never ``1E+3``; ``0.0000001``, never ``1E-7``."""
    return format(value, "f")


def fixed_numbers(text: str) -> str:
    """``text`` with every number in exponent notation (``2E+4``, ``2.16E+4``) written out in fixed point."""
    return _EXPONENT_NUMBER.sub(lambda match: fixed(Decimal(match.group())), text)
