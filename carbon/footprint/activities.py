"""Activities: each a pure function ``(inputs, context, dataset) -> list of line items``.

Inputs arrive validated (see ``schemas/footprint.py``): quantities are ``Decimal``. A line's
kilograms are ``quantity × factor`` computed exactly (divisions, e.g. a venue's electricity
shared by its attendance, are rounded to 10⁻⁸ kg); nothing here uses floats except the
great-circle distance, which is rounded to whole kilometres before it enters any product.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from carbon.core.geo import great_circle_m
from carbon.core.units import fixed
from carbon.footprint.dataset import Dataset, Factor, Metro, airport, city_code_of

EXACT = Decimal("0.00000001")
LONG_HAUL_KM = 3700  # DESNZ: short-haul below 3,700 km, long-haul above
DAYS_PER_YEAR = 365
MONTHS_PER_YEAR = 12
SHORT_HAUL_CABIN = {"economy": "economy", "premium_economy": "economy", "business": "business",
                    "first": "business"}


class InputError(ValueError):
    """An input the data cannot answer (unknown airport, no venue data); ``field`` is relative."""

    def __init__(self, field: str, message: str, code: str = "footprint.invalid_input", **extra):
        super().__init__(message)
        self.field, self.message, self.code, self.extra = field, message, code, extra


@dataclass(frozen=True, slots=True)
class Context:
    """What the calculation knows besides the activities: where, and the scene's venue."""

    province: str | None = None
    venue_kwh: Decimal | None = None
    venue_attendance: int | None = None
    household_size: int = 1


def line(activity: str, label: str, inputs: dict, quantity: Decimal, unit: str, factor: Factor,
         divisor: int | Decimal = 1) -> dict:
    kg = quantity * factor.value
    if divisor != 1:
        kg = (kg / divisor).quantize(EXACT, rounding=ROUND_HALF_EVEN)
    return {"activity": activity, "label": label, "inputs": inputs, "quantity": quantity, "unit": unit,
            "factor": factor, "divisor": divisor, "kg": kg}


def _trips(inputs: dict) -> int:
    return 2 if inputs.get("round_trip") else 1


# --- distances --------------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> Decimal:
    """Great-circle distance (``carbon.core.geo``), rounded to whole kilometres."""
    return Decimal(round(great_circle_m(lat1, lon1, lat2, lon2) / 1000))


def ground_distance(inputs: dict, data: Dataset, detour_key: str) -> tuple[Decimal, dict]:
    """One-way km: as given, or a city pair's great-circle distance times the data's detour factor."""
    if inputs.get("distance_km") is not None:
        return inputs["distance_km"], {"distance_km": fixed(inputs["distance_km"])}
    try:
        origin = data.city(inputs["from_city"])
    except LookupError as exc:
        raise _unknown("from_city", exc) from exc
    try:
        destination = data.city(inputs["to_city"])
    except LookupError as exc:
        raise _unknown("to_city", exc) from exc
    detour = data.factor(detour_key)
    gcd = great_circle_km(origin.lat, origin.lon, destination.lat, destination.lon)
    km = gcd * detour.value
    return km, {"from_city": origin.name_zh, "to_city": destination.name_zh, "great_circle_km": fixed(gcd),
                "detour_factor": fixed(detour.value), "detour_factor_key": detour.key, "distance_km": fixed(km)}


def _unknown(field: str, exc: LookupError) -> InputError:
    suggestions = getattr(exc, "suggestions", [])
    name = getattr(exc, "name", "")
    shown = getattr(exc, "shown", suggestions)
    hint = f"；是否是 / did you mean: {', '.join(shown)}" if shown else ""
    return InputError(field, f"未知名称 / Unknown name '{name}'{hint}", code="footprint.unknown_place",
                      suggestions=suggestions)


# --- transport --------------------------------------------------------------------------

def flight(inputs: dict, ctx: Context, data: Dataset) -> list[dict]:
    """Great-circle distance × DESNZ uplift, DESNZ band by distance, cabin, with or without RF."""
    uplift = data.factor("flight.distance.uplift_factor")
    rf = "rf" if inputs.get("radiative_forcing", True) else "norf"
    passengers = inputs.get("passengers", 1)
    legs: list[tuple[dict, Decimal]] = []
    if inputs.get("route"):
        stops = []
        for position, code in enumerate(inputs["route"]):
            try:
                stops.append((airport(code), city_code_of(code)))
            except LookupError as exc:
                raise _unknown(f"route.{position}", exc) from exc
        if inputs.get("round_trip"):
            stops = stops + stops[-2::-1]
        for (origin, origin_city), (destination, destination_city) in itertools.pairwise(stops):
            gcd = great_circle_km(origin["lat"], origin["lon"], destination["lat"], destination["lon"])
            described = {"from": origin["iata"], "to": destination["iata"], "from_name": origin["name"],
                         "to_name": destination["name"], "great_circle_km": fixed(gcd)}
            for end, metro in (("from", origin_city), ("to", destination_city)):
                if metro:
                    described[f"{end}_city_code"] = metro.code
                    described["note"] = "；".join(filter(None, (described.get("note"), _city_code_note(metro))))
            legs.append((described, gcd))
    else:
        for _ in range(_trips(inputs)):
            legs.append(({"great_circle_km": fixed(inputs["distance_km"])}, inputs["distance_km"]))
    lines = []
    for described, gcd in legs:
        band = "long" if gcd > LONG_HAUL_KM else "short"
        cabin = inputs.get("cabin", "economy")
        cabin_used = cabin if band == "long" else SHORT_HAUL_CABIN[cabin]
        factor = data.factor(f"flight.desnz.{band}.{cabin_used}.{rf}")
        distance = gcd * uplift.value
        described = {**described, "uplift": fixed(uplift.value), "distance_km": fixed(distance), "band": band,
                     "cabin": cabin, "cabin_factor": cabin_used, "radiative_forcing": rf == "rf",
                     "passengers": passengers}
        route = f"{described['from']}→{described['to']}" if "from" in described else f"{fixed(gcd)} km"
        lines.append(line("flight", f"航班 / Flight {route}", described, distance * passengers, "pkm", factor))
    return lines


def _city_code_note(metro: Metro) -> str:
    main, *others = metro.airports
    also = f"（另有 {'、'.join(others)}）" if others else ""
    also_en = f" (also {', '.join(others)})" if others else ""
    return (f"{metro.code} 为{metro.name_zh}的城市代码，按主要机场 {main} 计算{also} / {metro.code} is the city "
            f"code of {metro.name_en}: taken as its main airport {main}{also_en}")


def _ground(activity: str, label: str, factor_key: str, detour_key: str | None = None):
    def calculate(inputs: dict, ctx: Context, data: Dataset) -> list[dict]:
        if detour_key:
            km, described = ground_distance(inputs, data, detour_key)
        else:
            km, described = inputs["distance_km"], {"distance_km": fixed(inputs["distance_km"])}
        passengers = inputs.get("passengers", 1)
        trips = _trips(inputs)
        described.update(round_trip=trips == 2, passengers=passengers)
        return [line(activity, label, described, km * trips * passengers, "pkm", data.factor(factor_key))]
    calculate.__doc__ = f"{label}: passenger-km × {factor_key}."
    return calculate


_high_speed_rail = _ground("rail", "高铁 / High-speed rail", "rail.cn.hsr.full_process", "distance.detour.rail")
_conventional_rail = _ground("rail", "普通铁路 / Conventional rail", "rail.national.fallback",
                             "distance.detour.rail")


def rail(inputs: dict, ctx: Context, data: Dataset) -> list[dict]:
    """High-speed rail uses the Chinese full-process figure; conventional rail a labelled fallback."""
    service = inputs.get("service", "high_speed")
    lines = (_high_speed_rail if service == "high_speed" else _conventional_rail)(inputs, ctx, data)
    lines[0]["inputs"]["service"] = service
    return lines


coach = _ground("coach", "长途客车 / Coach", "bus.coach", "distance.detour.road")
bus = _ground("bus", "公交 / City bus", "bus.local.avg")
metro = _ground("metro", "地铁 / Metro", "metro.fallback")
taxi = _ground("taxi", "出租车 / Taxi", "taxi.regular.pkm", "distance.detour.road")

CAR_FACTORS = {"petrol": "car.avg.petrol", "diesel": "car.avg.diesel", "hybrid": "car.avg.phev"}


def _car_line(km: Decimal, described: dict, fuel: str, occupants: int, ctx: Context, data: Dataset,
              label: str) -> dict:
    described.update(fuel=fuel, occupants=occupants)
    if fuel == "electric":
        energy = data.factor("car.bev.kwh_per_vkm")
        grid = data.grid_factor(ctx.province)
        kwh = km * energy.value
        described.update(kwh_per_vkm=fixed(energy.value), kwh=fixed(kwh), province=ctx.province)
        return line("car", label, described, kwh, "kWh", grid, divisor=occupants)
    return line("car", label, described, km, "vkm", data.factor(CAR_FACTORS[fuel]), divisor=occupants)


def car(inputs: dict, ctx: Context, data: Dataset) -> list[dict]:
    """Vehicle-km shared by the occupants; an electric car is its kWh × the province's grid factor."""
    km, described = ground_distance(inputs, data, "distance.detour.road")
    trips = _trips(inputs)
    described["round_trip"] = trips == 2
    return [_car_line(km * trips, described, inputs.get("fuel", "petrol"), inputs.get("occupants", 1),
                      ctx, data, "私家车 / Car")]


# --- stay, food, venue ------------------------------------------------------------------

def hotel(inputs: dict, ctx: Context, data: Dataset) -> list[dict]:
    """Room-nights × the hotel factor (by star class when the dataset has one)."""
    region = "hk" if ctx.province == "HK" else "cn"
    star = inputs.get("star_class")
    factor = (data.optional_factor(f"hotel.{region}.room_night.star{star}") if star else None) \
        or data.factor(f"hotel.{region}.room_night")
    rooms = inputs.get("rooms", 1)
    described = {"nights": inputs["nights"], "rooms": rooms, "star_class": star,
                 "star_class_factor": factor.key.endswith(f"star{star}") if star else None}
    return [line("hotel", "住宿 / Hotel", described, Decimal(inputs["nights"] * rooms), "room-night", factor)]


def meal(inputs: dict, ctx: Context, data: Dataset) -> list[dict]:
    diet = inputs.get("diet", "medium_meat")
    return [line("meal", "餐饮 / Meals", {"count": inputs["count"], "diet": diet}, Decimal(inputs["count"]),
                 "meal", data.factor(f"meal.{diet}"))]


def venue_share(inputs: dict, ctx: Context, data: Dataset) -> list[dict]:
    """The guest's share of the venue's electricity: venue kWh × grid factor ÷ attendance."""
    if not ctx.venue_kwh or not ctx.venue_attendance:
        raise InputError("type", "该场景未提供场馆用电数据 / The scene gives no venue electricity and attendance",
                         code="footprint.no_venue_data")
    described = {"venue_kwh": fixed(ctx.venue_kwh), "attendance": ctx.venue_attendance, "province": ctx.province}
    return [line("venue_share", "场馆用电分摊 / Share of venue electricity", described, ctx.venue_kwh, "kWh",
                 data.grid_factor(ctx.province), divisor=ctx.venue_attendance)]


# --- life footprint (per person per year) -----------------------------------------------

def household_electricity(inputs: dict, ctx: Context, data: Dataset) -> list[dict]:
    kwh = inputs["kwh_per_month"] * MONTHS_PER_YEAR
    described = {"kwh_per_month": fixed(inputs["kwh_per_month"]), "province": ctx.province,
                 "household_size": ctx.household_size}
    return [line("electricity", "家庭用电 / Household electricity", described, kwh, "kWh/yr",
                 data.grid_factor(ctx.province), divisor=ctx.household_size)]


def natural_gas(inputs: dict, ctx: Context, data: Dataset) -> list[dict]:
    described = {"m3_per_month": fixed(inputs["m3_per_month"]), "household_size": ctx.household_size}
    return [line("natural_gas", "天然气 / Natural gas", described, inputs["m3_per_month"] * MONTHS_PER_YEAR,
                 "m3/yr", data.factor("gas.natural.cn"), divisor=ctx.household_size)]


def water(inputs: dict, ctx: Context, data: Dataset) -> list[dict]:
    """Supply and treatment (fallback figures: no Chinese tap-water factor was found)."""
    m3 = inputs["m3_per_month"] * MONTHS_PER_YEAR
    described = {"m3_per_month": fixed(inputs["m3_per_month"]), "household_size": ctx.household_size}
    return [line("water", label, described, m3, "m3/yr", data.factor(key), divisor=ctx.household_size)
            for key, label in (("water.supply", "自来水供应 / Water supply"),
                               ("water.treatment", "污水处理 / Water treatment"))]


def household_car(inputs: dict, ctx: Context, data: Dataset) -> list[dict]:
    described = {"km_per_year": fixed(inputs["km_per_year"]), "household_size": ctx.household_size}
    return [_car_line(inputs["km_per_year"], described, inputs.get("fuel", "petrol"), ctx.household_size,
                      ctx, data, "家庭用车 / Household car")]


def yearly_flights(inputs: dict, ctx: Context, data: Dataset) -> list[dict]:
    """Round trips a year at a typical one-way distance (China's average trip length by default)."""
    one_way = inputs.get("one_way_km") or data.factor("flight.cn.avg_trip_km").value
    trips = {"distance_km": one_way, "round_trip": True, "cabin": inputs.get("cabin", "economy"),
             "radiative_forcing": inputs.get("radiative_forcing", True)}
    lines = flight(trips, ctx, data)
    for item in lines:
        item["inputs"]["round_trips_per_year"] = inputs["round_trips_per_year"]
        item["quantity"] *= inputs["round_trips_per_year"]
        item["kg"] *= inputs["round_trips_per_year"]
        item["unit"] = "pkm/yr"
    return lines


def diet(inputs: dict, ctx: Context, data: Dataset) -> list[dict]:
    kind = inputs["diet"]
    return [line("diet", "饮食 / Diet", {"diet": kind}, Decimal(DAYS_PER_YEAR), "day/yr",
                 data.factor(f"diet.{kind}.day"))]


# --- an event's own footprint (kind ``host``: the organizer enters the whole event) ---------

MATERIALS = {"paper": ("paper.mixed.primary", "纸张与印刷品 / Paper and print"),
             "plastic": ("plastic.avg.primary", "塑料制品 / Plastics")}


def venue_electricity(inputs: dict, ctx: Context, data: Dataset) -> list[dict]:
    """The whole venue's electricity for the event: kWh × the province's grid factor."""
    described = {"kwh": fixed(inputs["kwh"]), "province": ctx.province}
    return [line("venue_electricity", "场馆用电 / Venue electricity", described, inputs["kwh"], "kWh",
                 data.grid_factor(ctx.province))]


def catering(inputs: dict, ctx: Context, data: Dataset) -> list[dict]:
    """Meals served (attendees, staff), by diet: meals × the dataset's meal factor."""
    lines = meal(inputs, ctx, data)
    lines[0].update(activity="catering", label="会议餐饮 / Catering")
    return lines


def material(inputs: dict, ctx: Context, data: Dataset) -> list[dict]:
    """Materials by weight (kg) × the dataset's factor for that material (only those it has)."""
    key, label = MATERIALS[inputs["material"]]
    described = {"material": inputs["material"], "kg": fixed(inputs["kg"])}
    return [line("material", f"物料 / Materials: {label}", described, inputs["kg"], "kg", data.factor(key))]


EVENT_ACTIVITIES = {"flight": flight, "rail": rail, "coach": coach, "bus": bus, "metro": metro, "taxi": taxi,
                    "car": car, "hotel": hotel, "meal": meal, "venue_share": venue_share}
# staff travel and stays are the guests' own activities, entered for the staff
HOST_ACTIVITIES = {"venue_electricity": venue_electricity, "catering": catering, "material": material,
                   "flight": flight, "rail": rail, "coach": coach, "bus": bus, "metro": metro, "taxi": taxi,
                   "car": car, "hotel": hotel}
LIFE_ACTIVITIES = {"electricity": household_electricity, "natural_gas": natural_gas, "water": water,
                   "car": household_car, "flights": yearly_flights, "diet": diet}
