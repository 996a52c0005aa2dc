"""Turn validated activities into a result: line items, their exact sum, the shown total.

``calculate`` is pure: the same inputs and dataset version always give the same answer.
"""
from __future__ import annotations

from decimal import Decimal

from carbon.core.errors import ValidationError
from carbon.core.units import ceil_to_unit, fixed, kg, kg_to_grams
from carbon.footprint.activities import EVENT_ACTIVITIES, HOST_ACTIVITIES, LIFE_ACTIVITIES, Context, InputError
from carbon.footprint.dataset import Dataset

ACTIVITIES = {"event": EVENT_ACTIVITIES, "life": LIFE_ACTIVITIES, "host": HOST_ACTIVITIES}
CREDIT_UNIT_KG = Decimal(1)


def calculate(kind: str, activities: list[dict], ctx: Context, data: Dataset) -> dict:
    """Line items for every activity (in the order given) and their total.

    ``total_exact`` is the exact sum of the line items; ``total_kg`` shows it to the gram.
    """
    functions = ACTIVITIES[kind]
    lines: list[dict] = []
    for index, activity in enumerate(activities):
        try:
            produced = functions[activity["type"]](activity, ctx, data)
        except InputError as exc:
            raise ValidationError(exc.message, code=exc.code,
                                  details={f"activities.{index}.{exc.field}": [exc.message], **exc.extra}) from exc
        for item in produced:
            item["index"] = index
        lines.extend(produced)
    total = sum((item["kg"] for item in lines), Decimal(0))
    return {"kind": kind, "dataset_version": data.version, "province": ctx.province, "lines": lines,
            "total_exact": total, "total_kg": kg(total), "total_grams": kg_to_grams(total),
            "neutralize_kg": to_neutralize(total)}


def to_neutralize(total_kg: Decimal, unit_kg: Decimal = CREDIT_UNIT_KG) -> Decimal:
    """Kilograms to buy: rounded up to the credit unit, never below the footprint."""
    return ceil_to_unit(total_kg, unit_kg)


def exact_total(shown: dict) -> Decimal:
    """The exact kilograms of a result as ``to_json`` gives it (and a footprint stores it): the sum
    of its lines, each exact (``total_kg`` is rounded to the gram). What an order of it rounds up,
    once, to its project's unit."""
    return sum((Decimal(item["kg"]) for item in shown["lines"]), Decimal(0))


def to_json(result: dict) -> dict:
    """The result as JSON-ready values: Decimals as strings, factors with their sources."""
    return {
        "kind": result["kind"], "dataset_version": result["dataset_version"], "province": result["province"],
        "total_kg": str(result["total_kg"]), "total_grams": result["total_grams"],
        "neutralize_kg": str(result["neutralize_kg"]),
        "lines": [{"index": item["index"], "activity": item["activity"], "label": item["label"],
                   "inputs": item["inputs"], "quantity": fixed(item["quantity"]), "unit": item["unit"],
                   "divided_by": item["divisor"] if item["divisor"] != 1 else None,
                   "factor": item["factor"].as_dict(), "fallback": item["factor"].is_fallback,
                   "kg": _plain(item["kg"])} for item in result["lines"]],
    }


def _plain(value: Decimal) -> str:
    """Exact kilograms without exponent notation and without trailing zeros past the gram."""
    text = fixed(value.normalize())
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(3, '0')}"
