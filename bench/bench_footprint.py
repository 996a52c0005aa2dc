"""Footprint calculator speed.

1. In-process: a five-activity event footprint (round-trip flight by airports, hotel, meals,
   high-speed rail by city pair, taxi), calculations per second for ``calculate`` alone and for
   the whole request path without HTTP (validate with the schema, calculate, to JSON).
2. HTTP: POST /api/v1/footprints/preview next to the bare /healthz route, under gunicorn
   (2 sync workers, 16 keep-alive clients on loopback), interleaved 3 times; with
   ``BENCH_BEFORE=<another checkout>`` that checkout first, in the same run (harness.checkouts).
"""
from __future__ import annotations

import sys

from harness import checkouts, get, gunicorn, load, per_second, post_json, scratch_database, summary

FIVE_ACTIVITIES = {"kind": "event", "province": "SC", "activities": [
    {"type": "flight", "route": ["PEK", "CTU"], "round_trip": True},
    {"type": "hotel", "nights": 2},
    {"type": "meal", "count": 6, "diet": "medium_meat"},
    {"type": "rail", "from_city": "成都", "to_city": "重庆", "round_trip": True},
    {"type": "taxi", "distance_km": 25},
]}



def in_process() -> str:
    from carbon.footprint import dataset
    from carbon.footprint.activities import Context
    from carbon.footprint.calculator import calculate, to_json
    from schemas.footprint import FootprintIn

    data, schema = dataset.load(), FootprintIn()
    body = schema.load(FIVE_ACTIVITIES)
    ctx = Context(province="SC")
    calc = [per_second(lambda: calculate("event", body["activities"], ctx, data), 3.0) for _ in range(3)]
    whole = [per_second(lambda: to_json(calculate("event", (b := schema.load(FIVE_ACTIVITIES))["activities"],
                                                  Context(province=b["province"]), data)), 3.0) for _ in range(3)]
    return (f"in-process, five activities: calculate {sorted(calc)[1]:,.0f}/s; "
            f"validate + calculate + JSON {sorted(whole)[1]:,.0f}/s (median of 3 × 3 s)")


def main(seconds: float = 5.0, rounds: int = 3) -> None:
    print(in_process())
    with scratch_database(sys.argv[1] if len(sys.argv) > 1 else None) as url:
        for label, cwd in checkouts():
            results: dict[str, list] = {"bare /healthz": [], "POST /footprints/preview": []}
            with gunicorn({"DIANDIAN_DATABASE_URL": url}, cwd=cwd) as base:
                for _ in range(rounds):
                    results["bare /healthz"].append(load("bare /healthz", base, get("/healthz"), seconds=seconds))
                    results["POST /footprints/preview"].append(load(
                        "POST /footprints/preview", base, post_json("/api/v1/footprints/preview", FIVE_ACTIVITIES),
                        seconds=seconds))
            print(summary(f"footprint preview (five activities) vs bare route ({label}: {cwd})", results,
                          "bare /healthz"), flush=True)


if __name__ == "__main__":
    main()
