"""Scene search speed (GET /api/v1/scenes without the HTTP layer).

1. Saving: ``carbon.scenes.search.index_text`` per second (what every scene save adds), and scenes
   created per second through the ORM with it (the model's before_insert).
2. Searching: ``carbon.scenes.service.find_scenes`` calls per second over N live scenes (default
   5,000, ``python bench/bench_scene_search.py [N] [DATABASE_URL]``) for a few kinds of query: no
   filter, a Chinese word, a traditional one, pinyin initials, city + kind, nearest first, and a word
   with nearest first. Each is a LIKE per word over ``scenes.search_text`` (and a haversine per
   row when ordered by distance), one page of 20.
"""
from __future__ import annotations

import random
import sys
import time

from harness import calibration_ms, per_second, scratch_database

CITIES = [("成都", 30.66, 104.06), ("上海", 31.23, 121.47), ("北京", 39.90, 116.40), ("臺北", 25.03, 121.56),
          ("重庆", 29.56, 106.55), ("杭州", 30.27, 120.16)]
WORDS = ["数字", "绿色", "碳中和", "低碳", "国际", "青年", "科技", "生态", "创新", "城市", "文旅", "能源"]
KINDS = [("conference", "论坛"), ("scenic_spot", "景区"), ("supermarket", "超市"), ("restaurant", "餐厅"),
         ("hotel", "酒店")]
QUERIES = {
    "no filter (newest first)": {},
    "q=碳中和": {"q": "碳中和"},
    "q=碳中和 论坛 (two words)": {"q": "碳中和 论坛"},
    "q=國際 (traditional)": {"q": "國際"},
    "q=tzh (pinyin initials)": {"q": "tzh"},
    "q=nomatch": {"q": "nomatchatall"},
    "city=成都市&kind=hotel": {"city": "成都市", "kind": "hotel"},
    "lat/lng (nearest first, all scenes)": {"lat": 30.6, "lng": 104.0},
    "q=绿色 + lat/lng": {"q": "绿色", "lat": 30.6, "lng": 104.0},
}


def seed(url: str, count: int) -> float:
    from app import create_app
    from carbon.core.db import db
    from carbon.organizers import service as organizers
    from carbon.scenes.models import Scene

    app = create_app({"ENV": "testing", "DATABASE_URL": url, "LOG_REQUESTS": False})
    rng = random.Random(7)
    with app.app_context():
        member = organizers.create_organization("成都数字碳中和高峰论坛组委会", owner_email="bench@search.example",
                                                owner_password="long password", owner_name="b")
        started = time.perf_counter()
        for number in range(count):
            city, lat, lng = rng.choice(CITIES)
            kind, noun = rng.choice(KINDS)
            name = f"{city}{''.join(rng.sample(WORDS, 2))}{noun}{number}"
            db.session.add(Scene(organization_id=member.organization.id, code=f"b{number:06d}", slug=f"b{number:06d}",
                                 kind=kind, name_zh=name, name_en=f"Bench scene {number}", city=city, preset={},
                                 status="live" if number % 10 else "draft",
                                 latitude=round(lat + rng.uniform(-0.3, 0.3), 6),
                                 longitude=round(lng + rng.uniform(-0.3, 0.3), 6)))
            if number % 500 == 499:
                db.session.commit()
        db.session.commit()
        return count / (time.perf_counter() - started)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    from carbon.scenes import search

    search.index_text(name_zh="预热", name_en="", organizer="", city="")  # converters loaded once
    indexed = per_second(lambda: search.index_text(name_zh="首届中国数字碳中和高峰论坛",
                                                   name_en="First China Digital Carbon Neutrality Forum",
                                                   organizer="成都数字碳中和高峰论坛组委会", city="成都"), seconds=1.0)
    print(f"index_text (forum, organizer, city): {indexed:,.0f}/s ({1e6 / indexed:,.0f} µs each)")
    with scratch_database(sys.argv[2] if len(sys.argv) > 2 else None) as url:
        created = seed(url, count)
        print(f"seeded {count:,} scenes (90% live): {created:,.0f} inserts/s with the search text")
        from app import create_app
        from carbon.scenes import service

        app = create_app({"ENV": "testing", "DATABASE_URL": url, "LOG_REQUESTS": False})
        with app.app_context():
            kind = url.split(":")[0]
            print(f"find_scenes over {count:,} scenes ({kind}), one page of 20, calibration {calibration_ms():.1f} ms:")
            for label, query in QUERIES.items():
                hits = len(service.find_scenes(**query, limit=50)["items"])
                rate = per_second(lambda query=query: service.find_scenes(**query), seconds=1.0)
                print(f"  {label:40s} {rate:8,.0f}/s  {1000 / rate:6.2f} ms  (first page of 50: {hits} hits)")


if __name__ == "__main__":
    main()
