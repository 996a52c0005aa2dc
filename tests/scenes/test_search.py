"""Finding a scene without a code: GET /api/v1/scenes, its Chinese matching, filters, distance,
pages, refusals, and the visit of a scene opened from it, counted under the channel ``search``."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests
from sqlalchemy import select

from carbon.core.clock import clock
from carbon.core.db import db
from carbon.core.geo import EARTH_RADIUS_M, great_circle_m, haversine_term, haversine_term_sql
from carbon.scenes.models import Scene
from tests.conftest import make_scene

FORUM = "首届中国数字碳中和高峰论坛"
OLD_ROWS = [  # a scene as the schema before search had it (revision c12a3051e1fe)
    "INSERT INTO organizations (id, public_id, name, created_at) VALUES (1, 'org_old', '成都組委會', '2021-01-01')",
    ("INSERT INTO scenes (id, public_id, organization_id, code, slug, kind, name_zh, name_en, description, city, "
     "preset, organizer_pledges_venue, pledge_note, status, created_at, updated_at) VALUES (1, 'scn_old', 1, 'old1', "
     "'old1', 'conference', '首届中国数字碳中和高峰论坛', 'Forum', '', '成都市', '{\"activities\": []}', false, '', "
     "'live', '2021-01-01', '2021-01-01')"),
    "INSERT INTO scene_channels (scene_id, slug, label, created_at) VALUES (1, '', '默认', '2021-01-01')",
    ("INSERT INTO scene_daily_stats (scene_id, channel, day, visits, logins, footprints, grams_neutralized, "
     "money_raised) VALUES (1, '', '2021-09-07', 7, 0, 0, 0, 0)"),
]


def live(client, admin, **fields) -> dict:
    scene = make_scene(client, admin, **fields)
    response = client.patch(f"/api/v1/admin/scenes/{scene['id']}", json={"status": "live"}, headers=admin)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def found(client, **query) -> list[str]:
    response = client.get("/api/v1/scenes", query_string=query)
    assert response.status_code == 200, response.get_json()
    return [item["name_zh"] for item in response.get_json()["items"]]


@pytest.fixture
def places(client, admin):
    """Live scenes of several kinds in two cities."""
    live(client, admin, code="forum21")  # FORUM, 成都, conference
    live(client, admin, kind="scenic_spot", name_zh="大熊猫繁育研究基地", name_en="Giant Panda Base", city="成都市")
    live(client, admin, kind="restaurant", name_zh="蜀味小馆", name_en="Sichuan Kitchen", city="成都")
    live(client, admin, kind="hotel", name_zh="外滩绿色酒店", name_en="Bund Green Hotel", city="上海", province="SH")


@pytest.mark.parametrize(("q", "names"), [
    ("碳中和", [FORUM]),                       # a substring of the Chinese name
    ("高峰论坛 数字", [FORUM]),                # every word must match, in any order
    ("首屆中國數字", [FORUM]),                 # traditional finds simplified
    ("sjzg", [FORUM]),                         # pinyin initials
    ("tanzhonghe", [FORUM]),                   # full pinyin
    ("PANDA base", ["大熊猫繁育研究基地"]),    # English, any case
    ("ｋｉｔｃｈｅｎ", ["蜀味小馆"]),          # full-width letters
    ("组委会", [FORUM, "蜀味小馆", "大熊猫繁育研究基地", "外滩绿色酒店"]),  # the organizer (论坛组委会)
    ("shanghai", ["外滩绿色酒店"]),            # the city, in pinyin
    ("上海 熊猫", []),
    ("%", []), ("_", []), ("\\", []),          # LIKE's wildcards are plain characters
])
def test_words_match_names_organizer_and_city_in_chinese_ways(client, places, q, names):
    assert sorted(found(client, q=q)) == sorted(names)


def test_a_scene_named_in_traditional_characters_is_found_in_simplified(client, admin):
    live(client, admin, name_zh="臺北國際會議中心", name_en="", city="臺北")
    assert found(client, q="台北国际") == ["臺北國際會議中心"]
    assert found(client, q="tbgj") == ["臺北國際會議中心"]
    assert found(client, city="台北市") == ["臺北國際會議中心"]


def test_kind_and_city_filters(client, places):
    assert found(client, kind="scenic_spot") == ["大熊猫繁育研究基地"]
    assert sorted(found(client, city="成都")) == sorted([FORUM, "大熊猫繁育研究基地", "蜀味小馆"])
    assert sorted(found(client, city="成都市")) == sorted(found(client, city="成都"))
    assert found(client, city="上海", kind="hotel") == ["外滩绿色酒店"]
    assert found(client, city="上海", kind="restaurant") == []


def test_date_filter_is_the_days_a_scene_runs_and_today_is_chinas(client, admin):
    live(client, admin, name_zh="两日论坛", starts_on="2021-09-07", ends_on="2021-09-08")
    live(client, admin, kind="supermarket", name_zh="绿色超市")  # no dates: runs every day
    assert sorted(found(client, date="2021-09-08")) == ["两日论坛", "绿色超市"]
    assert found(client, date="2021-09-09") == ["绿色超市"]
    assert found(client, date="2021-09-06") == ["绿色超市"]
    clock.set(datetime(2021, 9, 6, 16, 30, tzinfo=UTC))  # 00:30 on 7 September in Beijing
    assert sorted(found(client, date="today")) == ["两日论坛", "绿色超市"]


def test_nearest_first_in_metres_and_scenes_without_a_place_last(client, admin):
    live(client, admin, name_zh="一度以北", latitude=31, longitude="104.000000")
    live(client, admin, name_zh="近处", latitude="30.010000", longitude=104.01)
    live(client, admin, name_zh="没有位置")
    live(client, admin, name_zh="远处", latitude=39.9, longitude=116.4)
    body = client.get("/api/v1/scenes", query_string={"lat": "30", "lng": "104"}).get_json()
    assert [item["name_zh"] for item in body["items"]] == ["近处", "一度以北", "远处", "没有位置"]
    by_name = {item["name_zh"]: item for item in body["items"]}
    assert by_name["一度以北"]["distance_m"] == round(EARTH_RADIUS_M * 3.141592653589793 / 180) == 111195
    assert by_name["远处"]["distance_m"] == round(great_circle_m(30, 104, 39.9, 116.4))
    assert by_name["没有位置"]["distance_m"] is None and by_name["没有位置"]["latitude"] is None
    assert by_name["近处"]["latitude"] == "30.010000" and by_name["近处"]["longitude"] == "104.010000"
    unordered = client.get("/api/v1/scenes").get_json()["items"]
    assert all(item["distance_m"] is None for item in unordered)
    assert [item["name_zh"] for item in unordered] == ["远处", "没有位置", "近处", "一度以北"]  # newest first


@pytest.mark.parametrize("point", [(30.5, 104.05), (-33.86, 151.2), (89.9, -179.9), (0, 0), (30.0, 104.0),
                                   (-30.01, -75.99)])
def test_the_sql_order_is_the_python_distance(app, client, admin, point):
    live(client, admin, latitude="30.010000", longitude="104.010000")
    with app.app_context():
        in_sql = db.session.scalar(select(haversine_term_sql(Scene.latitude, Scene.longitude, *point)))
    assert in_sql == pytest.approx(haversine_term(*point, 30.01, 104.01), rel=1e-12, abs=1e-15)


def test_drafts_and_closed_scenes_never_appear(client, admin):
    make_scene(client, admin, name_zh="草稿论坛")  # draft
    closed = live(client, admin, name_zh="闭幕论坛")
    client.patch(f"/api/v1/admin/scenes/{closed['id']}", json={"status": "closed"}, headers=admin)
    live(client, admin, name_zh="进行中论坛")
    for query in ({}, {"q": "论坛"}, {"city": "成都"}, {"kind": "conference"}, {"lat": 30, "lng": 104},
                  {"date": "today"}):
        assert found(client, **query) == ["进行中论坛"], query


def test_pages(client, admin):
    for number in range(5):
        live(client, admin, name_zh=f"论坛{number}")
    pages = [client.get("/api/v1/scenes", query_string={"limit": 2, "page": page}).get_json() for page in (1, 2, 3)]
    assert [len(page["items"]) for page in pages] == [2, 2, 1]
    assert [page["has_more"] for page in pages] == [True, True, False]
    assert pages[1]["page"] == 2 and pages[1]["limit"] == 2
    names = [item["name_zh"] for page in pages for item in page["items"]]
    assert names == [f"论坛{number}" for number in (4, 3, 2, 1, 0)]
    assert client.get("/api/v1/scenes?limit=2&page=4").get_json()["items"] == []
    assert len(client.get("/api/v1/scenes").get_json()["items"]) == 5  # 20 by default


@pytest.mark.parametrize(("query", "field"), [
    ({"lat": "90.1", "lng": "0"}, "lat"), ({"lat": "0", "lng": "-180.5"}, "lng"), ({"lat": "30"}, "lng"),
    ({"lng": "104"}, "lat"), ({"lat": "NaN", "lng": "1"}, "lat"), ({"lat": "inf", "lng": "1"}, "lat"),
    ({"lat": "1e999999", "lng": "1"}, "lat"), ({"lat": "3" * 5000, "lng": "1"}, "lat"), ({"lat": "", "lng": "1"}, "lat"),
    ({"q": "论" * 65}, "q"), ({"q": "碳\x00"}, "q"), ({"q": "\x1b[31m"}, "q"), ({"city": "成都\x07"}, "city"),
    ({"city": ""}, "city"), ({"kind": "rocket"}, "kind"), ({"date": "2021-02-30"}, "date"),
    ({"date": "tomorrow"}, "date"), ({"date": "2021-9-7"}, "date"), ({"limit": "51"}, "limit"),
    ({"limit": "0"}, "limit"), ({"page": "101"}, "page"), ({"page": "x"}, "page"),
])
def test_bad_input_is_a_422_in_the_envelope(client, query, field):
    response = client.get("/api/v1/scenes", query_string=query)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error" and field in error["details"]
    assert error["request_id"] == response.headers["X-Request-ID"]


def test_a_scene_opened_from_search_counts_under_search_and_so_does_what_follows(client, admin, sandbox):
    live(client, admin, code="found1", venue_kwh="10000", expected_attendance=500)
    item = client.get("/api/v1/scenes", query_string={"q": "碳中和"}).get_json()["items"][0]
    assert item["scene_string"] == "s=found1&c=search" and item["organizer"] == "论坛组委会"
    for _ in range(2):
        resolved = client.get("/api/v1/scenes/resolve", query_string={"scene": item["scene_string"]})
        assert resolved.status_code == 200 and resolved.get_json()["channel"]["slug"] == "search"
    assert client.get("/api/v1/scenes/resolve?scene=s%3Dfound1").status_code == 200  # a scanned default code

    code = requests.post(f"{sandbox.url}/__sandbox__/login-code", json={"openid": "o_search"}, timeout=5).json()["code"]
    token = client.post("/api/v1/auth/login", json={"code": code, "scene": item["scene_string"]}).get_json()["token"]
    footprint = client.post("/api/v1/footprints", headers={"Authorization": f"Bearer {token}"}, json={
        "scene": item["scene_string"], "activities": [{"type": "venue_share"}]})
    assert footprint.status_code == 201, footprint.get_json()

    stats = client.get(f"/api/v1/admin/scenes/{item['id']}/stats", headers=admin).get_json()
    channels = {row["channel"]: row for row in stats["by_channel"]}
    assert channels["search"]["label"] == "搜索 / Search"
    assert (channels["search"]["visits"], channels["search"]["logins"], channels["search"]["footprints"]) == (2, 1, 1)
    assert (channels[""]["visits"], channels[""]["logins"], channels[""]["footprints"]) == (1, 0, 0)
    exported = client.get(f"/api/v1/admin/scenes/{item['id']}/stats.csv", headers=admin).get_data(as_text=True)
    assert ",search,2,1,1," in exported


def test_the_search_channel_is_every_scenes_and_prints_no_code(client, admin, sandbox):
    scene = make_scene(client, admin)
    assert [channel["slug"] for channel in scene["channels"]] == ["", "search"]
    taken = client.post(f"/api/v1/admin/scenes/{scene['id']}/channels", json={"slug": "search"}, headers=admin)
    assert taken.status_code == 409 and taken.get_json()["error"]["code"] == "scene.channel_exists"
    for method, path in (("POST", "wxacode"), ("GET", "wxacode.png?channel=search"),
                         ("GET", "qrcode.png?channel=search"), ("GET", "poster.png?channel=search&source=qrcode")):
        response = client.open(f"/api/v1/admin/scenes/{scene['id']}/{path}", method=method, headers=admin,
                               json={"channel": "search"} if method == "POST" else None)
        assert response.status_code == 422, (path, response.get_data(as_text=True)[:300])
        assert response.get_json()["error"]["code"] == "scene.search_channel_not_printable"
    calls = requests.get(f"{sandbox.url}/__sandbox__/calls", params={"path": "/wxa/getwxacodeunlimit"},
                         timeout=5).json()["calls"]
    assert calls == []


def test_organizers_place_a_scene_and_its_search_text_follows_edits(client, admin):
    scene = make_scene(client, admin, latitude=30.5573, longitude="104.0672")
    assert (scene["latitude"], scene["longitude"]) == ("30.557300", "104.067200")
    url = f"/api/v1/admin/scenes/{scene['id']}"
    client.patch(url, json={"status": "live", "latitude": 30.12345678901, "longitude": -0.5}, headers=admin)
    placed = client.get(url, headers=admin).get_json()
    assert (placed["latitude"], placed["longitude"]) == ("30.123457", "-0.500000")
    for bad in ({"latitude": 95}, {"longitude": "181"}, {"latitude": "NaN"}, {"latitude": True}, {"latitude": [1]},
                {"longitude": 1e400}):
        response = client.patch(url, json=bad, headers=admin)
        assert response.status_code == 422 and set(bad) <= set(response.get_json()["error"]["details"]), bad
    assert found(client, q="碳中和") == [FORUM]
    client.patch(url, json={"name_zh": "成都绿色生活周", "name_en": "Green Week", "city": "重慶"}, headers=admin)
    assert found(client, q="碳中和") == [] and found(client, q="lsshz") == ["成都绿色生活周"]
    assert found(client, q="chongqing") == ["成都绿色生活周"] and found(client, city="重庆") == ["成都绿色生活周"]
    client.patch(url, json={"latitude": None, "longitude": None}, headers=admin)
    item = client.get("/api/v1/scenes?lat=30&lng=104").get_json()["items"][0]
    assert item["latitude"] is None and item["distance_m"] is None


def test_the_migration_indexes_existing_scenes_and_gives_them_the_search_channel(tmp_path):
    """Scenes made before the search columns: searchable after the upgrade, their channels and
    counters untouched (no table is rebuilt, which on SQLite would cascade to them)."""
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import text

    from app import create_app

    app = create_app({"ENV": "testing", "DATABASE_URL": f"sqlite:///{tmp_path}/old.sqlite3", "LOG_REQUESTS": False})
    with app.app_context():
        upgrade(revision="c12a3051e1fe")
        with db.engine.begin() as conn:
            for statement in OLD_ROWS:
                conn.execute(text(statement))
        upgrade()
        scene = db.session.get(Scene, 1)
        assert "sjzg" in scene.search_text and "成都组委会" in scene.search_text and scene.search_city == "成都"
        assert [channel.slug for channel in scene.channels] == ["", "search"]
        assert db.session.scalar(text("SELECT visits FROM scene_daily_stats")) == 7
        db.session.remove()
        downgrade(revision="c12a3051e1fe")
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT slug FROM scene_channels")).scalars().all() == [""]
            assert conn.execute(text("SELECT visits FROM scene_daily_stats")).scalar() == 7


def test_reindex_recomputes_the_search_text(app, client, admin):
    live(client, admin)
    with app.app_context():
        db.session.execute(Scene.__table__.update().values(search_text="", search_city=""))
        db.session.commit()
    assert found(client, q="碳中和") == []
    runner = app.test_cli_runner()
    result = runner.invoke(args=["reindex-scenes"])
    assert result.exit_code == 0 and "1 scenes reindexed" in result.output
    assert found(client, q="碳中和") == [FORUM] and found(client, city="成都") == [FORUM]


def test_coordinates_are_decimals_not_floats(app, client, admin):
    make_scene(client, admin, latitude="30.557300", longitude="104.067200")
    with app.app_context():
        scene = db.session.scalar(select(Scene))
        assert scene.latitude == Decimal("30.557300") and isinstance(scene.longitude, Decimal)
