"""The footprint API: preview, save, read back, history, validation, stored results."""
from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from sqlalchemy import select

from carbon.core.db import db
from carbon.footprint import dataset
from carbon.footprint.models import Footprint

CONFERENCE = {"kind": "event", "province": "SC", "activities": [
    {"type": "flight", "route": ["PEK", "CTU"], "round_trip": True},
    {"type": "hotel", "nights": 2},
    {"type": "meal", "count": 6, "diet": "medium_meat"},
]}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_preview_needs_no_login_and_saves_nothing(app, client):
    response = client.post("/api/v1/footprints/preview", json=CONFERENCE)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["id"] is None and body["total_kg"] == "540.954" and body["neutralize_kg"] == "541"
    assert body["dataset_version"] == dataset.CURRENT_VERSION
    first = body["lines"][0]
    assert first["inputs"]["from"] == "PEK" and first["inputs"]["great_circle_km"] == "1556"
    assert first["factor"] == {"key": "flight.desnz.short.economy.rf", "value": "0.12576", "unit": "kgCO2e/pkm",
                               "region": "GB", "year": 2025, "source": "UK DESNZ GHG conversion factors 2025",
                               "note": "<3700 km; with RF"}
    assert first["fallback"] is True and first["kg"] == "211.3371648"
    with app.app_context():
        assert db.session.scalar(select(Footprint)) is None


def test_save_read_back_and_history(app, client, login):
    token, _ = login("o_fp_alice")
    created = client.post("/api/v1/footprints", json=CONFERENCE, headers=bearer(token))
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["id"].startswith("fp_") and body["total_kg"] == "540.954"
    preview = client.post("/api/v1/footprints/preview", json=CONFERENCE).get_json()
    assert preview["lines"] == body["lines"]  # the same request always gives the same answer

    again = client.get(f"/api/v1/footprints/{body['id']}", headers=bearer(token))
    assert again.status_code == 200 and again.get_json()["lines"] == body["lines"]

    rail = client.post("/api/v1/footprints", json={"activities": [{"type": "rail", "distance_km": 1000}]},
                       headers=bearer(token)).get_json()
    assert rail["total_kg"] == "30.480"
    history = client.get("/api/v1/footprints", headers=bearer(token)).get_json()["items"]
    assert [item["id"] for item in history] == [rail["id"], body["id"]]
    with app.app_context():
        row = db.session.scalar(select(Footprint).where(Footprint.public_id == body["id"]))
        assert row.total_grams == 540954 and row.dataset_version == dataset.CURRENT_VERSION
        assert row.request["activities"][1]["nights"] == 2


def test_someone_elses_footprint_is_not_found(client, login):
    alice, _ = login("o_fp_owner")
    created = client.post("/api/v1/footprints", json=CONFERENCE, headers=bearer(alice)).get_json()
    bob, _ = login("o_fp_other")
    response = client.get(f"/api/v1/footprints/{created['id']}", headers=bearer(bob))
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "footprint.not_found"
    assert client.get("/api/v1/footprints", headers=bearer(bob)).get_json()["items"] == []


def test_saving_needs_a_login(client):
    response = client.post("/api/v1/footprints", json=CONFERENCE)
    assert response.status_code == 401


def test_a_new_dataset_never_changes_a_stored_result(app, client, login, monkeypatch):
    token, _ = login("o_fp_versions")
    created = client.post("/api/v1/footprints", json=CONFERENCE, headers=bearer(token)).get_json()
    changed = dataset.Dataset(dataset.CURRENT_VERSION)
    changed.version = "cn-2099.1"
    changed.factors["hotel.cn.room_night"] = dataset.Factor("hotel.cn.room_night", Decimal(99), "kgCO2e/room-night",
                                                            "CN", 2099, "test", "")
    monkeypatch.setattr(dataset, "load", lambda version=None: changed)
    stored = client.get(f"/api/v1/footprints/{created['id']}", headers=bearer(token)).get_json()
    assert stored["total_kg"] == "540.954" and stored["dataset_version"] == dataset.CURRENT_VERSION
    fresh = client.post("/api/v1/footprints/preview", json=CONFERENCE).get_json()
    assert fresh["dataset_version"] == "cn-2099.1" and fresh["total_kg"] != "540.954"


def test_life_footprint_compares_with_china_and_earlier_results(client, login):
    token, _ = login("o_fp_life")
    life = {"kind": "life", "province": "SC", "household_size": 2, "activities": [
        {"type": "electricity", "kwh_per_month": 200}, {"type": "diet", "diet": "vegan"}]}
    first = client.post("/api/v1/footprints", json=life, headers=bearer(token)).get_json()
    assert Decimal(first["total_kg"]) == Decimal(2400) * Decimal("0.1404") / 2 + 365 * Decimal("2.89")
    assert first["comparison"]["china_per_capita_kg"] == "8900"
    assert first["comparison"]["previous"] == []
    life["activities"][0]["kwh_per_month"] = 100
    second = client.post("/api/v1/footprints", json=life, headers=bearer(token)).get_json()
    previous = second["comparison"]["previous"]
    assert [item["id"] for item in previous] == [first["id"]]
    assert previous[0]["change_kg"] == "-84.240"
    assert second["comparison"]["ratio_to_china"] == str(
        (Decimal(second["total_kg"]) / 8900).quantize(Decimal("0.01")))


def test_validation_errors_name_each_field(client):
    response = client.post("/api/v1/footprints/preview", json={"activities": [
        {"type": "flight", "route": ["PEK"]},
        {"type": "hotel", "nights": -1},
        {"type": "taxi", "distance_km": 400000},
        {"type": "meal"},
        {"type": "rocket"},
        {"type": "bus", "distance_km": "1.25"},
    ]})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error" and error["request_id"]
    assert set(error["details"]) == {"activities.0.route", "activities.1.nights", "activities.2.distance_km",
                                     "activities.3.count", "activities.4.type", "activities.5.distance_km"}


def test_bad_shapes_are_422_never_500(client):
    for body in ({}, {"activities": []}, {"activities": "x"}, {"activities": [1]}, {"kind": "week", "activities": []},
                 {"activities": [{"type": "rail", "distance_km": True}]},
                 {"activities": [{"type": "rail", "distance_km": "NaN"}]},
                 {"activities": [{"type": "rail"}]},
                 {"province": "ZZ", "activities": [{"type": "rail", "distance_km": 5}]},
                 {"kind": "life", "activities": [{"type": "hotel", "nights": 1}]}):
        response = client.post("/api/v1/footprints/preview", json=body)
        assert response.status_code == 422, (body, response.get_json())
        assert response.get_json()["error"]["code"] == "validation_error"


def test_unknown_airport_and_city_suggest_close_matches(client):
    response = client.post("/api/v1/footprints/preview",
                           json={"activities": [{"type": "flight", "route": ["CTU", "PEJ"]}]})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "footprint.unknown_place" and "PEK" in error["details"]["suggestions"]
    assert "activities.0.route.1" in error["details"]
    city = client.post("/api/v1/footprints/preview",
                       json={"activities": [{"type": "rail", "from_city": "Chengdoo", "to_city": "北京"}]})
    assert city.status_code == 422 and "chengdu" in city.get_json()["error"]["details"]["suggestions"]


def test_json_numbers_are_taken_as_written(client):
    response = client.post("/api/v1/footprints/preview",
                           json={"activities": [{"type": "rail", "distance_km": 12.5}]})
    assert response.status_code == 200
    assert response.get_json()["lines"][0]["kg"] == "0.381"  # 12.5 × 0.03048, exact


@pytest.mark.parametrize("kind", [["flight"], {"flight": 1}, 7, None, True])
@pytest.mark.parametrize("path", ["/api/v1/footprints/preview", "/api/v1/footprints"])
def test_an_activity_type_that_is_not_a_string_is_422_naming_it(client, login, path, kind):
    token, _ = login("o_types")
    response = client.post(path, json={"activities": [{"type": "meal", "count": 1}, {"type": kind}]},
                           headers=bearer(token))
    assert response.status_code == 422, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "validation_error" and set(error["details"]) == {"activities.1.type"}


EXPONENT = re.compile(r"(?<![A-Za-z0-9_])[0-9.]+[eE][+-]?[0-9]+(?![A-Za-z0-9_])")  # a number, not an id like fp_y7e5e…
ROUND_NUMBERS = [
    {"kind": "event", "activities": [{"type": "flight", "distance_km": 20000}, {"type": "flight", "distance_km": "1E+4"},
                                     {"type": "flight", "distance_km": 1000, "round_trip": True},
                                     {"type": "rail", "distance_km": 1000}, {"type": "car", "distance_km": "1000.0"},
                                     {"type": "taxi", "distance_km": 100, "passengers": 2}]},
    {"kind": "life", "activities": [{"type": "electricity", "kwh_per_month": 1000},
                                    {"type": "car", "km_per_year": 100000, "fuel": "electric"},
                                    {"type": "natural_gas", "m3_per_month": 100},
                                    {"type": "flights", "round_trips_per_year": 10, "one_way_km": 2000}]},
]


def strings_in(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)
    elif isinstance(value, str):
        yield value


@pytest.mark.parametrize("body", ROUND_NUMBERS)
def test_round_numbers_are_shown_in_fixed_point(client, login, body):
    token, _ = login("o_fixed")
    created = client.post("/api/v1/footprints", json=body, headers=bearer(token))
    assert created.status_code == 201, created.get_json()
    answers = [created.get_json(), client.post("/api/v1/footprints/preview", json=body).get_json(),
               client.get(f"/api/v1/footprints/{created.get_json()['id']}", headers=bearer(token)).get_json(),
               client.get("/api/v1/footprints", headers=bearer(token)).get_json()]
    for answer in answers:
        shown = [text for text in strings_in(answer) if EXPONENT.search(text)]
        assert shown == [], shown
    lines = answers[0]["lines"]
    if body["kind"] == "event":
        assert lines[0]["label"] == "航班 / Flight 20000 km" and lines[0]["inputs"]["great_circle_km"] == "20000"
        assert lines[1]["label"] == "航班 / Flight 10000 km"
        rail = next(line for line in lines if line["activity"] == "rail")
        assert rail["quantity"] == "1000" and rail["inputs"]["distance_km"] == "1000"
    else:
        assert lines[0]["quantity"] == "12000" and lines[0]["inputs"]["kwh_per_month"] == "1000"


def test_results_stored_with_exponents_are_shown_in_fixed_point(app, client, login):
    """Results saved before the fix carry "1E+3"; they are shown as plain numbers, their values unchanged."""
    token, _ = login("o_fixed_stored")
    created = client.post("/api/v1/footprints", json={"activities": [{"type": "rail", "distance_km": 1000}]},
                          headers=bearer(token)).get_json()
    with app.app_context():
        row = db.session.scalar(select(Footprint).where(Footprint.public_id == created["id"]))
        result = json.loads(json.dumps(row.result))
        line = result["lines"][0]
        line.update(quantity="1E+3", label="航班 / Flight 2E+4 km")
        line["inputs"].update(distance_km="1E+3", great_circle_km="2.16E+4", note="E+3 stays text")
        row.result = result
        db.session.commit()
    shown = client.get(f"/api/v1/footprints/{created['id']}", headers=bearer(token)).get_json()["lines"][0]
    assert shown["quantity"] == "1000" and shown["label"] == "航班 / Flight 20000 km"
    assert shown["inputs"]["distance_km"] == "1000" and shown["inputs"]["great_circle_km"] == "21600"
    assert shown["inputs"]["note"] == "E+3 stays text" and shown["kg"] == created["lines"][0]["kg"]


def flight(client, *route, **extra):
    return client.post("/api/v1/footprints/preview",
                       json={"activities": [{"type": "flight", "route": list(route), **extra}]})


@pytest.mark.parametrize("city, main, others", [("BJS", "PEK", ["PKX"]), ("TYO", "HND", ["NRT"]),
                                                ("LON", "LHR", ["LGW", "STN"]), ("nyc", "JFK", ["EWR", "LGA"])])
def test_a_city_code_is_taken_as_its_main_airport_and_says_so(client, city, main, others):
    response = flight(client, city, "CTU", round_trip=True)
    assert response.status_code == 200, response.get_json()
    out, back = (line["inputs"] for line in response.get_json()["lines"])
    assert (out["from"], out["from_city_code"], back["to"], back["to_city_code"]) == (main, city.upper(), main,
                                                                                      city.upper())
    assert "to_city_code" not in out and city.upper() in out["note"] and all(code in out["note"] for code in others)
    direct = flight(client, main, "CTU").get_json()["lines"][0]
    assert direct["inputs"]["great_circle_km"] == out["great_circle_km"] and "note" not in direct["inputs"]


def test_airport_codes_that_are_also_city_codes_stay_airports(client):
    for code, name in (("SHA", "Hongqiao"), ("CKG", "Jiangbei"), ("CTU", "Shuangliu")):
        inputs = flight(client, code, "PEK").get_json()["lines"][0]["inputs"]
        assert inputs["from"] == code and name in inputs["from_name"] and "note" not in inputs


@pytest.mark.parametrize("typed, expected", [("ZZQ", {"ZHA"}), ("TOK", {"HND", "NRT"}), ("CHE", {"CTU", "TFU"}),
                                             ("PEJ", {"PEK"}), ("LHX", {"LHR", "LHW"}), ("XIA", {"XMN"})])
def test_an_unknown_airport_gets_suggestions_by_city_name_and_letters(client, typed, expected):
    response = flight(client, "CTU", typed)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "footprint.unknown_place" and "activities.0.route.1" in error["details"]
    suggestions = error["details"]["suggestions"]
    assert expected <= set(suggestions) and 1 <= len(suggestions) <= 5 and typed not in suggestions
    assert f"{suggestions[0]} " in error["message"]  # shown with its city


def test_the_city_code_table_names_real_airports():
    airports = dataset._airports()
    for code, metro in dataset.metros().items():
        assert len(code) == 3 and code.isupper() and metro.name_zh and metro.name_en
        assert metro.airports and all(iata in airports for iata in metro.airports), code
        assert dataset.airport(code)["iata"] == (code if code in airports else metro.airports[0])
