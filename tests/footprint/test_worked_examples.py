"""Worked examples, each computed by hand from the dataset (cn-2025.1)."""
from __future__ import annotations

import math
from decimal import Decimal as D

import pytest

from carbon.core.errors import ValidationError
from carbon.footprint import dataset
from carbon.footprint.activities import Context
from carbon.footprint.calculator import calculate, to_json, to_neutralize
from schemas.footprint import FootprintIn

DATA = dataset.load("cn-2025.1")


def run(activities, kind="event", **context):
    body = FootprintIn().load({"kind": kind, "activities": activities})
    return calculate(kind, body["activities"], Context(**context), DATA)


def cosine_law_km(a, b):
    """An independent great-circle formula (spherical law of cosines), to check the haversine."""
    p1, p2 = math.radians(a["lat"]), math.radians(b["lat"])
    angle = math.acos(math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(math.radians(b["lon"] - a["lon"])))
    return round(6371.0088 * angle)


def test_pek_ctu_pek_economy_two_nights_six_meals():
    gcd = cosine_law_km(dataset.airport("PEK"), dataset.airport("CTU"))
    assert gcd == 1556
    result = run([{"type": "flight", "route": ["PEK", "CTU"], "round_trip": True, "cabin": "economy"},
                  {"type": "hotel", "nights": 2}, {"type": "meal", "count": 6, "diet": "medium_meat"}],
                 province="SC")
    leg = D(1556) * D("1.08") * D("0.12576")  # short-haul (< 3,700 km) economy with RF
    assert leg == D("211.3371648")
    hotel, meals = 2 * D("53.5"), 6 * D("1.88")
    assert [line["kg"] for line in result["lines"]] == [leg, leg, hotel, meals]
    assert result["total_exact"] == D("540.9543296")
    assert result["total_kg"] == D("540.954")
    assert result["total_grams"] == 540954
    assert result["neutralize_kg"] == D(541)
    legs = [line["inputs"] for line in result["lines"][:2]]
    assert [(leg["from"], leg["to"]) for leg in legs] == [("PEK", "CTU"), ("CTU", "PEK")]
    assert legs[0]["distance_km"] == "1680.48" and legs[0]["band"] == "short"
    assert result["lines"][0]["factor"].key == "flight.desnz.short.economy.rf"
    assert result["lines"][0]["factor"].is_fallback  # a UK figure, labelled as such


def test_high_speed_rail_1000_km_is_30_48_kg():
    result = run([{"type": "rail", "distance_km": 1000}])
    assert result["total_exact"] == D("30.48")
    line = to_json(result)["lines"][0]
    assert line["factor"]["key"] == "rail.cn.hsr.full_process" and line["factor"]["value"] == "0.03048"
    assert line["fallback"] is False and line["kg"] == "30.480"


def test_sichuan_household_uses_the_sichuan_factor():
    sichuan = run([{"type": "electricity", "kwh_per_month": 200}], kind="life", province="SC")
    assert sichuan["lines"][0]["factor"].key == "grid.cn.province.sichuan"
    assert sichuan["total_exact"] == 200 * 12 * D("0.1404") == D("336.96")
    shared = run([{"type": "electricity", "kwh_per_month": 200}], kind="life", province="SC", household_size=3)
    assert shared["total_exact"] == D("112.32")


def test_provinces_without_their_own_factor_use_the_grid_region_then_the_nation():
    beijing = run([{"type": "electricity", "kwh_per_month": 100}], kind="life", province="BJ")
    assert beijing["lines"][0]["factor"].key == "grid.cn.region.north"
    assert beijing["total_exact"] == 1200 * D("0.6776")
    unknown = run([{"type": "electricity", "kwh_per_month": 100}], kind="life")
    assert unknown["lines"][0]["factor"].key == "grid.cn.national.avg"


def test_flight_without_radiative_forcing_and_long_haul_business():
    no_rf = run([{"type": "flight", "distance_km": 1000, "radiative_forcing": False}])
    assert no_rf["total_exact"] == 1000 * D("1.08") * D("0.07435")
    long_haul = run([{"type": "flight", "route": ["PEK", "LHR"], "cabin": "business"}])
    line = long_haul["lines"][0]
    assert line["inputs"]["band"] == "long" and line["factor"].key == "flight.desnz.long.business.rf"
    gcd = D(cosine_law_km(dataset.airport("PEK"), dataset.airport("LHR")))
    assert line["kg"] == gcd * D("1.08") * D("0.33940")


def test_multi_leg_and_short_haul_first_maps_to_business():
    result = run([{"type": "flight", "route": ["PEK", "CTU", "KMG"], "cabin": "first", "passengers": 2}])
    assert len(result["lines"]) == 2
    assert all(line["factor"].key == "flight.desnz.short.business.rf" for line in result["lines"])
    assert result["lines"][0]["quantity"] == 2 * D(result["lines"][0]["inputs"]["distance_km"])


def test_city_pair_uses_great_circle_times_the_named_detour_factor():
    result = run([{"type": "rail", "from_city": "成都", "to_city": "Chongqing", "round_trip": True}])
    line = result["lines"][0]
    gcd = D(line["inputs"]["great_circle_km"])
    assert line["inputs"]["detour_factor_key"] == "distance.detour.rail"
    assert line["kg"] == gcd * D("1.2") * 2 * D("0.03048")


def test_electric_car_is_rescaled_to_the_grid_and_shared_by_occupants():
    result = run([{"type": "car", "fuel": "electric", "distance_km": 100, "occupants": 2}], province="SC")
    line = result["lines"][0]
    assert line["factor"].key == "grid.cn.province.sichuan"
    assert line["kg"] == 100 * D("0.17") * D("0.1404") / 2


def test_venue_share_divides_the_venue_electricity_by_attendance():
    result = run([{"type": "venue_share"}], province="SC", venue_kwh=D(10000), venue_attendance=500)
    assert result["total_exact"] == D("2.808")
    with pytest.raises(ValidationError) as raised:
        run([{"type": "venue_share"}])
    assert raised.value.code == "footprint.no_venue_data"


def test_life_footprint_per_person_per_year():
    result = run([{"type": "electricity", "kwh_per_month": 300}, {"type": "natural_gas", "m3_per_month": 20},
                  {"type": "water", "m3_per_month": 10}, {"type": "diet", "diet": "vegetarian"},
                  {"type": "flights", "round_trips_per_year": 1}],
                 kind="life", province="SC", household_size=2)
    expected = (3600 * D("0.1404") / 2 + 240 * D("2.1622") / 2 + 120 * D("0.1913") / 2
                + 120 * D("0.17088") / 2 + 365 * D("3.81") + 2 * 1774 * D("1.08") * D("0.12576"))
    assert result["total_exact"] == expected


def test_unknown_airport_suggests_close_codes():
    with pytest.raises(ValidationError) as raised:
        run([{"type": "flight", "route": ["PEJ", "CTU"]}])
    error = raised.value
    assert error.code == "footprint.unknown_place"
    assert "activities.0.route.0" in error.details
    assert "PEK" in error.details["suggestions"]


def test_neutralize_rounds_up_to_the_unit_and_never_below():
    assert to_neutralize(D("30.48")) == D(31)
    assert to_neutralize(D(31)) == D(31)
    assert to_neutralize(D("30.001"), D("0.5")) == D("30.5")


def test_a_quantity_is_the_number_written_however_it_is_written():
    """"1.50" was refused (two places) where the JSON number 1.50 was taken; "1_000" (Python's digit
    grouping) and "١٠" (Arabic-Indic digits) were taken as 1000 and 10."""
    def distance(value):
        return FootprintIn().load({"activities": [{"type": "rail", "distance_km": value}]})["activities"][0]["distance_km"]

    assert distance("1.50") == distance(1.50) == distance("1.5") == D("1.5")
    assert str(distance("1.50")) == "1.5" and str(distance("100.0")) == "100"
    for written in ("1_000", "\u0661\u0660", "0x10", "1.5.0", "", "+", "1e", "NaN", "1e999999999", "1.55"):
        with pytest.raises(Exception) as refused:
            distance(written)
        assert "distance_km" in str(refused.value), written
