"""The big screen: what a snapshot holds, one shared read per refresh however many viewers, the
event stream and the polling snapshot over a live server, and the pages' answers to bad input."""
from __future__ import annotations

import json
import threading
import time

import pytest
import requests
from sqlalchemy import select

from carbon.certificates.models import Certificate
from carbon.core.db import db
from carbon.screen.service import Feeds, mask_name
from tests.payments.conftest import guest_token, live_scene, seed_project
from tests.payments.test_checkout_e2e import bearer, hook, place_order


def pay(live, sandbox, openid: str, scene: str, name: str = "张三丰") -> dict:
    """A guest of ``scene`` pays for a rail footprint through the sandbox; the order as created."""
    token = guest_token(live.url, sandbox, openid)
    footprint = live.post("/api/v1/footprints", json={"scene": scene, "activities": [
        {"type": "rail", "distance_km": 1000}]}, headers=bearer(token)).json()
    created = place_order(live, token, {"footprint_id": footprint["id"], "scene": scene, "beneficiary_name": name},
                          key=f"screen-{openid}").json()
    assert hook(sandbox, "request-payment", created["request_payment"]).json()["notify"]["acknowledged"]
    return created["order"]


def events(response):
    """The events of an SSE response as (event, data) pairs; comments and ``retry`` skipped."""
    event, data = None, []
    for line in response.iter_lines(decode_unicode=True):
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = None, []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


@pytest.fixture
def forum(live):
    with live.app.app_context():
        _, scene_id = live_scene(seed_project(live.app, units=10_000), "scrn21", "screen@forum.example")
    return scene_id


def test_a_payment_shows_on_the_stream_and_the_snapshot_without_a_reload(live, sandbox, forum):
    first = live.get("/screen/scrn21/snapshot.json")
    assert first.status_code == 200 and first.headers["ETag"]
    assert first.json()["kg_neutralized"] == "0.000" and first.json()["participants"] == 0
    assert live.get("/screen/scrn21/snapshot.json", headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    refused = live.get("/screen/scrn21/snapshot.json", headers={"If-Match": '"another"'})
    assert refused.status_code == 412 and refused.json()["error"]["code"] == "request.precondition_failed"

    stream = requests.get(f"{live.url}/screen/{forum}/events", stream=True, timeout=30)
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    received = events(stream)
    kind, before = next(received)
    assert kind == "snapshot" and before["kg_neutralized"] == "0.000" and before["newest"] == []
    order = pay(live, sandbox, "o_screen_1", "s=scrn21&c=door")
    for _, after in received:  # the changes come as they happen (the footprint's count first): no reload, no poll
        if after["kg_neutralized"] != "0.000":
            break
    stream.close()
    assert after["kg_neutralized"] == order["kg"] and after["participants"] == 1
    assert after["newest"][0]["name"] == "张**" and after["newest"][0]["kg"] == order["kg"]
    with live.app.app_context():  # the wall names no certificate: its public record shows the name in full
        number = db.session.scalar(select(Certificate.number))
    assert number not in json.dumps(after) and len(after["newest"][0]["key"]) == 16
    assert after["scene"]["id"] == forum and after["scene"]["scene_string"] == "s=scrn21"

    changed = live.get("/screen/scrn21/snapshot.json", headers={"If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200 and changed.json()["kg_neutralized"] == order["kg"]


def test_a_reconnecting_viewer_is_sent_nothing_it_has_seen(live, forum):
    seen = live.get(f"/screen/{forum}/snapshot.json").headers["ETag"].strip('"')
    fresh = requests.get(f"{live.url}/screen/{forum}/events", stream=True, timeout=(5, 3))
    assert next(events(fresh))[1]["scene"]["id"] == forum  # a new viewer gets the snapshot at once
    fresh.close()
    stream = requests.get(f"{live.url}/screen/{forum}/events", headers={"Last-Event-ID": seen}, stream=True,
                          timeout=(5, 3))
    lines = stream.iter_lines(decode_unicode=True)
    assert next(lines) == "retry: 2000"
    with pytest.raises(requests.exceptions.ConnectionError):  # 3 s without a byte: nothing was resent
        for line in lines:
            assert not line.startswith("data:"), line
    stream.close()


def test_one_read_per_refresh_however_many_viewers_wait():
    """200 viewers of one scene waiting 1.2 s for a change: the scene is read once per 0.2 s period at
    most (never once per viewer), and every viewer gets the first snapshot."""
    reads: list[float] = []

    def reader(scene_id: int) -> dict:
        reads.append(time.monotonic())
        time.sleep(0.01)  # a read takes a while: others must not start their own meanwhile
        return {"scene": scene_id, "kg": "1.000"}

    feeds = Feeds(reader, refresh_seconds=0.2)
    got: list = []

    def viewer() -> None:
        first = feeds.wait(7, None, 5)
        got.append(first.etag)
        feeds.wait(7, first.etag, 1.2)  # nothing changes: wakes at each refresh, reads at most once

    started = time.monotonic()
    threads = [threading.Thread(target=viewer) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    periods = (time.monotonic() - started) / 0.2
    assert len(got) == 200 and len(set(got)) == 1
    assert 1 <= len(reads) <= periods + 2, (len(reads), periods)
    assert feeds.reads == len(reads)


def test_a_changed_read_wakes_the_waiting_viewers_and_an_equal_one_does_not():
    values = iter(["1.000", "1.000", "2.000"] + ["2.000"] * 100)
    feeds = Feeds(lambda scene_id: {"kg": next(values)}, refresh_seconds=0.05)
    first = feeds.wait(1, None, 5)
    second = feeds.wait(1, first.etag, 5)
    assert second is not None and second.data == {"kg": "2.000"} and feeds.reads == 3
    assert feeds.wait(1, second.etag, 0.2) is None


def test_a_polling_viewer_gets_a_fresh_snapshot_when_nobody_streams():
    values = iter(["1.000", "2.000"])
    feeds = Feeds(lambda scene_id: {"kg": next(values)}, refresh_seconds=0.05)
    assert feeds.current(1).data == {"kg": "1.000"}
    assert feeds.current(1).data == {"kg": "1.000"} and feeds.reads == 1  # fresh: not read again
    time.sleep(0.06)
    assert feeds.current(1).data == {"kg": "2.000"} and feeds.reads == 2


def test_a_failed_read_reaches_the_viewer_and_the_next_viewer_reads_again():
    calls = {"n": 0}

    def reader(scene_id):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database away")
        return {"kg": "0.000"}

    feeds = Feeds(reader, refresh_seconds=1)
    with pytest.raises(RuntimeError):
        feeds.wait(1, None, 1)
    assert feeds.wait(1, None, 1).data == {"kg": "0.000"}


def test_closing_the_feeds_wakes_the_waiting_viewers_and_no_read_starts_after():
    reads: list[int] = []
    feeds = Feeds(lambda scene_id: reads.append(scene_id) or {"kg": "1.000"}, refresh_seconds=0.05)
    seen = feeds.wait(1, None, 5).etag
    woken: list = []
    viewer = threading.Thread(target=lambda: woken.append(feeds.wait(1, seen, 30)))
    viewer.start()
    time.sleep(0.2)  # the viewer re-reads at each refresh while it waits
    feeds.close()
    viewer.join(2)
    assert not viewer.is_alive() and woken == [None]
    done = len(reads)
    assert feeds.wait(1, None, 1) is None and feeds.wait(2, seen, 1) is None
    time.sleep(0.1)
    assert len(reads) == done  # nothing read once closed


def test_a_stream_ends_when_its_feeds_close(live, forum):
    stream = requests.get(f"{live.url}/screen/{forum}/events", stream=True, timeout=(5, 5))
    received = events(stream)
    assert next(received)[0] == "snapshot"
    live.app.extensions["diandian.screen"].close()
    assert list(received) == []  # the server ended the stream: no timeout, no further event
    stream.close()


def test_names_are_masked_on_the_wall():
    assert [mask_name(name) for name in ("张三丰", "张三", "李", "Alice", "", None, " 王五 ")] == \
        ["张**", "张*", "李*", "A***", "微信用户", "微信用户", "王*"]


def test_unknown_draft_and_bad_scenes_are_404_and_a_closed_one_still_shows(app, client, admin):
    from tests.conftest import make_scene

    draft = make_scene(client, admin, code="draft01")
    for key in ("nope123", draft["id"], "draft01", "x" * 300, "scn_" + "z" * 12):
        page = client.get(f"/screen/{key}")
        assert page.status_code == 404 and "未找到" in page.get_data(as_text=True)
        for suffix in ("snapshot.json", "events", "code.png"):
            answer = client.get(f"/screen/{key}/{suffix}")
            assert answer.status_code == 404 and answer.get_json()["error"]["code"] == "scene.not_found"
    client.patch(f"/api/v1/admin/scenes/{draft['id']}", json={"status": "closed"}, headers=admin)
    closed = client.get("/screen/draft01/snapshot.json")
    assert closed.status_code == 200 and closed.get_json()["scene"]["status"] == "closed"
    page = client.get("/screen/draft01")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["Content-Security-Policy"]
    code = client.get("/screen/draft01/code.png")
    assert code.status_code == 200 and code.data.startswith(b"\x89PNG")


def test_the_stream_ends_after_its_life_and_tells_the_browser_when_to_reconnect(database_url, sandbox):
    from app import create_app
    from tests.conftest import dispose_app, make_config

    application = create_app(make_config(database_url, sandbox.url, SCREEN_STREAM_SECONDS=1,
                                         SCREEN_REFRESH_SECONDS=0.2))
    try:
        client = application.test_client()
        from carbon.organizers import service as organizers
        from carbon.organizers.service import Principal
        from carbon.scenes import service as scenes

        with application.app_context():
            owner = organizers.create_organization("组委会", owner_email="s@x.example", owner_password="long password",
                                                   owner_name="o")
            scene = scenes.create_scene(Principal(owner.organization, "owner", organizer=owner),
                                        {"kind": "conference", "name_zh": "论坛", "code": "life01"})
            scenes.update_scene(Principal(owner.organization, "owner", organizer=owner), scene.public_id,
                                {"status": "live"})
        started = time.monotonic()
        body = client.get("/screen/life01/events").get_data(as_text=True)  # ends by itself
        assert time.monotonic() - started < 10
        assert body.startswith("retry: 2000\n\n") and body.count("event: snapshot") == 1
    finally:
        dispose_app(application)
