"""Footprint requests and results. Units are in the field names (``distance_km``, ``kwh_per_month``)."""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from carbon.core.units import fixed_numbers
from carbon.footprint import dataset
from schemas.common import Text

CABINS = ("economy", "premium_economy", "business", "first")
DIETS = ("high_meat", "medium_meat", "low_meat", "pescatarian", "vegetarian", "vegan")
FUELS = ("petrol", "diesel", "hybrid", "electric")


_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class Quantity(fields.Field):
    """A non-negative decimal with at most ``places`` decimals and an upper limit, as ``Decimal``.

    JSON numbers are taken as written (``12.5`` becomes ``Decimal("12.5")``), strings in ASCII
    decimal notation; trailing zeros are no places (``"1.50"`` is 1.5). The quantity never takes
    part in float arithmetic.
    """

    def __init__(self, *, maximum: int, places: int = 1, minimum: Decimal = Decimal(0),
                 exclusive_minimum: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.maximum, self.places, self.minimum, self.exclusive_minimum = Decimal(maximum), places, minimum, \
            exclusive_minimum
        self.metadata.setdefault("type", "number")
        # the limits as the description states them (integers: the document holds no Decimal)
        self.metadata.setdefault("maximum", int(self.maximum))
        self.metadata.setdefault("minimum", int(minimum))
        if exclusive_minimum:
            self.metadata.setdefault("exclusiveMinimum", True)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValidationError("需为数字 / Must be a number.")
        if isinstance(value, str) and not _NUMBER.fullmatch(value):  # no "1_000", no non-ASCII digits
            raise ValidationError("不是有效数字 / Not a valid number.")
        try:
            number = Decimal(repr(value) if isinstance(value, float) else value)
        except InvalidOperation as exc:
            raise ValidationError("不是有效数字 / Not a valid number.") from exc
        if not number.is_finite():
            raise ValidationError("不是有效数字 / Not a valid number.")
        too_small = number <= self.minimum if self.exclusive_minimum else number < self.minimum
        if too_small or number > self.maximum:
            low = f"> {self.minimum}" if self.exclusive_minimum else f"≥ {self.minimum}"
            raise ValidationError(f"需 {low} 且 ≤ {self.maximum} / Must be {low} and ≤ {self.maximum}.")
        number = number.normalize()  # within the limits: "1.50" is 1.5, as the JSON number 1.50 is
        if number.as_tuple().exponent < -self.places:
            raise ValidationError(f"最多 {self.places} 位小数 / At most {self.places} decimal place(s).")
        return number.quantize(Decimal(1)) if number == number.to_integral_value() else number  # 1000, not 1E+3


def _int(low: int, high: int, **kwargs):
    return fields.Integer(strict=True, validate=validate.Range(low, high), **kwargs)


class _Activity(Schema):
    type = Text(required=True)


class _Trip(_Activity):
    """Distance in km, or a pair of Chinese cities (great-circle × the data's detour factor)."""

    MAX_KM = 5000
    CITY_PAIRS = True
    distance_km = Quantity(maximum=5000)
    from_city = Text(validate=validate.Length(1, 32))
    to_city = Text(validate=validate.Length(1, 32))
    round_trip = fields.Boolean(load_default=False)
    passengers = _int(1, 9, load_default=1)

    @validates_schema
    def _distance_or_cities(self, data, **kwargs):
        km = data.get("distance_km")
        if km is not None and km > self.MAX_KM:
            raise ValidationError(f"需 ≤ {self.MAX_KM} / Must be ≤ {self.MAX_KM} km.", "distance_km")
        cities = data.get("from_city") and data.get("to_city")
        if km is None and not (self.CITY_PAIRS and cities):
            what = "distance_km 或 from_city+to_city / distance_km or from_city and to_city" \
                if self.CITY_PAIRS else "distance_km"
            raise ValidationError(f"需提供 {what}", "distance_km")


class FlightIn(_Activity):
    route = fields.List(Text(validate=validate.Regexp(r"^[A-Za-z]{3}$", error="IATA 三字码 / IATA code")),
                        validate=validate.Length(2, 6),
                        metadata={"description": "IATA codes, e.g. [\"PEK\", \"CTU\"]; multi-leg allowed"})
    distance_km = Quantity(maximum=20000, metadata={"description": "great-circle km, instead of route"})
    round_trip = fields.Boolean(load_default=False)
    cabin = Text(load_default="economy", validate=validate.OneOf(CABINS))
    passengers = _int(1, 9, load_default=1)
    radiative_forcing = fields.Boolean(load_default=True, metadata={"description": "含辐射强迫 / with RF (×1.9)"})

    @validates_schema
    def _route_or_distance(self, data, **kwargs):
        if not data.get("route") and data.get("distance_km") is None:
            raise ValidationError("需提供 route 或 distance_km / Give route or distance_km", "route")


class RailIn(_Trip):
    service = Text(load_default="high_speed", validate=validate.OneOf(("high_speed", "conventional")))


class CoachIn(_Trip):
    MAX_KM = 3000


class TaxiIn(_Trip):
    MAX_KM = 500


class BusIn(_Trip):
    MAX_KM = 300
    CITY_PAIRS = False


class MetroIn(BusIn):
    MAX_KM = 200


class CarIn(_Trip):
    fuel = Text(load_default="petrol", validate=validate.OneOf(FUELS))
    occupants = _int(1, 9, load_default=1)


class HotelIn(_Activity):
    nights = _int(1, 365, required=True)
    rooms = _int(1, 20, load_default=1)
    star_class = _int(1, 5)


class MealIn(_Activity):
    count = _int(1, 200, required=True)
    diet = Text(load_default="medium_meat", validate=validate.OneOf(DIETS))


class VenueShareIn(_Activity):
    """No inputs: the scene gives its venue electricity and attendance."""


class ElectricityIn(_Activity):
    kwh_per_month = Quantity(maximum=20000, minimum=Decimal(0), exclusive_minimum=False, required=True)


class NaturalGasIn(_Activity):
    m3_per_month = Quantity(maximum=2000, minimum=Decimal(0), exclusive_minimum=False, required=True)


class WaterIn(_Activity):
    m3_per_month = Quantity(maximum=1000, minimum=Decimal(0), exclusive_minimum=False, required=True)


class HouseholdCarIn(_Activity):
    km_per_year = Quantity(maximum=300000, minimum=Decimal(0), exclusive_minimum=False, required=True)
    fuel = Text(load_default="petrol", validate=validate.OneOf(FUELS))


class YearlyFlightsIn(_Activity):
    round_trips_per_year = _int(0, 100, required=True)
    one_way_km = Quantity(maximum=20000, metadata={"description": "default: China's average trip, 1,774 km"})
    cabin = Text(load_default="economy", validate=validate.OneOf(CABINS))
    radiative_forcing = fields.Boolean(load_default=True)


class DietIn(_Activity):
    diet = Text(required=True, validate=validate.OneOf(DIETS))


class VenueElectricityIn(_Activity):
    kwh = Quantity(maximum=10_000_000, required=True, metadata={"description": "the venue's kWh for the event"})


class CateringIn(_Activity):
    count = _int(1, 1_000_000, required=True, metadata={"description": "meals served"})
    diet = Text(load_default="medium_meat", validate=validate.OneOf(DIETS))


class MaterialIn(_Activity):
    material = Text(required=True, validate=validate.OneOf(("paper", "plastic")))
    kg = Quantity(maximum=1_000_000, places=3, required=True)


ACTIVITY_SCHEMAS = {
    "event": {"flight": FlightIn(), "rail": RailIn(), "coach": CoachIn(), "bus": BusIn(), "metro": MetroIn(),
              "taxi": TaxiIn(), "car": CarIn(), "hotel": HotelIn(), "meal": MealIn(),
              "venue_share": VenueShareIn()},
    "life": {"electricity": ElectricityIn(), "natural_gas": NaturalGasIn(), "water": WaterIn(),
             "car": HouseholdCarIn(), "flights": YearlyFlightsIn(), "diet": DietIn()},
}
HOST_SCHEMAS = {"venue_electricity": VenueElectricityIn(), "catering": CateringIn(), "material": MaterialIn(),
                "flight": FlightIn(), "rail": RailIn(), "coach": CoachIn(), "bus": BusIn(), "metro": MetroIn(),
                "taxi": TaxiIn(), "car": CarIn(), "hotel": HotelIn()}
_DESCRIPTION = "; ".join(f"{kind}: {', '.join(types)}" for kind, types in ACTIVITY_SCHEMAS.items())
ACTIVITY_SCHEMAS["host"] = HOST_SCHEMAS  # the organizer's own (HostFootprintIn), never a guest's


class FootprintIn(Schema):
    kind = Text(load_default="event", validate=validate.OneOf(("event", "life")))
    scene = Text(validate=validate.Length(1, 64),
                 metadata={"description": "the scene code the guest scanned (gives province and venue)"})
    province = Text(validate=validate.OneOf(sorted(dataset.load().provinces)),
                    metadata={"description": "province code, e.g. SC (for the electricity factor)"})
    household_size = _int(1, 20, load_default=1, metadata={"description": "life footprint: people sharing"})
    activities = fields.List(fields.Dict(), required=True, validate=validate.Length(1, 30),
                             metadata={"description": f"objects with a 'type'; {_DESCRIPTION}"})

    @post_load
    def _activities(self, data, **kwargs):
        schemas = ACTIVITY_SCHEMAS[data["kind"]]
        errors: dict = {}
        parsed = []
        for index, raw in enumerate(data["activities"]):
            kind = raw.get("type")
            schema = schemas.get(kind) if isinstance(kind, str) else None  # a list or object is no type
            if schema is None:
                errors[index] = {"type": [f"需为 / Must be one of: {', '.join(schemas)}."]}
                continue
            try:
                parsed.append(schema.load(raw))
            except ValidationError as exc:
                errors[index] = exc.messages
        if errors:
            raise ValidationError({"activities": errors})
        data["activities"] = parsed
        return data


class HostFootprintIn(FootprintIn):
    """The event's own footprint, entered by its organizer: venue electricity, catering, materials,
    staff travel and stays. For one of the organization's scenes, or (a company without scenes) for
    a named event."""

    kind = Text(load_default="host", validate=validate.Equal("host"))
    scene = Text(validate=validate.Length(1, 32), metadata={"description": "one of the organization's scenes"})
    event_name = Text(validate=validate.Length(1, 64), metadata={"description": "the event, as the certificate names it"})
    activities = fields.List(fields.Dict(), required=True, validate=validate.Length(1, 60),
                             metadata={"description": f"objects with a 'type': {', '.join(HOST_SCHEMAS)}"})

    @validates_schema
    def _scene_or_event(self, data, **kwargs):
        if not data.get("scene") and not data.get("event_name"):
            raise ValidationError("需提供场景或活动名称 / Give a scene or an event name", "event_name")


class Shown(fields.String):
    """Text a person reads, every number in fixed point: results stored before this rule say "1E+3"."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else fixed_numbers(str(value))


class ShownInputs(fields.Dict):
    """The inputs as understood, their texts under the same rule."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return {key: fixed_numbers(item) if isinstance(item, str) else item for key, item in value.items()}


class FactorOut(Schema):
    key = fields.String()
    value = Shown()
    unit = fields.String()
    region = fields.String()
    year = fields.Integer(allow_none=True)
    source = fields.String()
    note = fields.String(allow_none=True)


class LineOut(Schema):
    index = fields.Integer(metadata={"description": "which activity of the request"})
    activity = fields.String()
    label = Shown()
    inputs = ShownInputs(metadata={"description": "the inputs as understood (airports, distance, ...)"})
    quantity = Shown()
    unit = fields.String()
    divided_by = fields.Integer(allow_none=True, metadata={"description": "attendance or household size"})
    factor = fields.Nested(FactorOut)
    fallback = fields.Boolean(metadata={"description": "a figure from outside China standing in"})
    kg = fields.String(metadata={"description": "exact kg CO2e of this line"})


class ComparisonOut(Schema):
    china_per_capita_kg = fields.String()
    ratio_to_china = fields.String()
    source = fields.String()
    previous = fields.List(fields.Dict())


class FootprintOut(Schema):
    id = fields.String(allow_none=True, metadata={"description": "null for a preview"})
    kind = fields.String()
    scene = fields.String(allow_none=True)
    dataset_version = fields.String()
    province = fields.String(allow_none=True)
    total_kg = fields.String(metadata={"description": "kg CO2e, three places (per person per year for life)"})
    total_grams = fields.Integer()
    neutralize_kg = fields.String(metadata={"description": "kg to buy in 1-kg credit units: the exact total "
                                                           "rounded up (an order rounds it up to its project's unit)"})
    lines = fields.List(fields.Nested(LineOut))
    comparison = fields.Nested(ComparisonOut, allow_none=True)
    created_at = fields.DateTime(allow_none=True)


class HistoryQuery(Schema):
    kind = Text(validate=validate.OneOf(("event", "life")))
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))


class HistoryOut(Schema):
    items = fields.List(fields.Nested(FootprintOut))
