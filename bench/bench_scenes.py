"""Scene resolve speed (what every scanned code costs).

1. In-process: ``carbon.scenes.service.resolve`` inside an app and request context, calls per
   second with the per-worker cache (default ``SCENE_CACHE_SECONDS``) and with it disabled (0).
2. HTTP: GET /api/v1/scenes/resolve (the scene URL-encoded, as the mini-program sends it) next to
   the bare /healthz route, under gunicorn (2 sync workers, 16 keep-alive clients on loopback),
   interleaved 3 times; then again in a second gunicorn with DIANDIAN_SCENE_CACHE_SECONDS=0. With
   ``BENCH_BEFORE=<another checkout>`` that checkout first, in the same run (harness.checkouts).

Visits are counted in memory and flushed to the database every 2 s in each worker, so a cached
resolve is a read of the worker's memory plus, now and then, one small write.
"""
from __future__ import annotations

import sys
import urllib.error
import urllib.request

from harness import checkouts, get, gunicorn, load, per_second, scratch_database, summary

RESOLVE = "/api/v1/scenes/resolve?scene=s%3Dcdcnf21%26c%3Ddoor"


def seed_demo(url: str) -> None:
    from app import create_app
    from carbon import demo

    app = create_app({"ENV": "testing", "DATABASE_URL": url, "LOG_REQUESTS": False})
    with app.app_context():
        for line in demo.seed():
            print(line)



def resolves_per_second(url: str, overrides: dict) -> tuple[float, float]:
    from app import create_app
    from carbon.core import extensions as ext
    from carbon.scenes import service

    app = create_app({"ENV": "testing", "DATABASE_URL": url, "LOG_REQUESTS": False, **overrides})
    with app.app_context(), app.test_request_context():
        ttl = ext.settings().SCENE_CACHE_SECONDS
        runs = [per_second(lambda: service.resolve("s%3Dcdcnf21")) for _ in range(3)]
        service.runtime().visits.flush()
    return sorted(runs)[1], ttl


def in_process(url: str) -> str:
    cached, ttl = resolves_per_second(url, {})
    uncached, _ = resolves_per_second(url, {"SCENE_CACHE_SECONDS": 0})
    return (f"in-process service.resolve('s%3Dcdcnf21'): cached (SCENE_CACHE_SECONDS={ttl:g}) {cached:,.0f}/s; "
            f"uncached (SCENE_CACHE_SECONDS=0) {uncached:,.0f}/s (median of 3 × 2 s)")


def check(base: str, path: str) -> None:
    """One request before the load: a failing route shows its body instead of a count of errors."""
    try:
        with urllib.request.urlopen(base + path, timeout=10) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        print(f"GET {path} → {exc.code}: {exc.read().decode(errors='replace')[:2000]}")


def series(base: str, resolve_name: str, seconds: float, rounds: int) -> dict[str, list]:
    check(base, RESOLVE)
    results: dict[str, list] = {"bare /healthz": [], resolve_name: []}
    for _ in range(rounds):
        results["bare /healthz"].append(load("bare /healthz", base, get("/healthz"), seconds=seconds))
        results[resolve_name].append(load(resolve_name, base, get(RESOLVE), seconds=seconds))
    if any(r.errors for r in results[resolve_name]):
        check(base, RESOLVE)
    return results


def main(seconds: float = 5.0, rounds: int = 3) -> None:
    with scratch_database(sys.argv[1] if len(sys.argv) > 1 else None) as url:
        seed_demo(url)
        print(in_process(url))
        env = {"DIANDIAN_DATABASE_URL": url}
        kind = url.split(":")[0]
        for label, cwd in checkouts():
            with gunicorn(env, cwd=cwd) as base:
                results = series(base, "GET resolve (cached)", seconds, rounds)
            print(summary(f"scenes ({label}: {cwd}): resolve, cache SCENE_CACHE_SECONDS=5 (default), vs bare route "
                          f"({kind})", results, "bare /healthz"), flush=True)
            with gunicorn({**env, "DIANDIAN_SCENE_CACHE_SECONDS": "0"}, cwd=cwd) as base:
                results = series(base, "GET resolve (uncached)", seconds, rounds)
            print(summary(f"scenes ({label}: {cwd}): resolve, UNCACHED DIANDIAN_SCENE_CACHE_SECONDS=0, vs bare route "
                          f"({kind})", results, "bare /healthz"), flush=True)


if __name__ == "__main__":
    main()
