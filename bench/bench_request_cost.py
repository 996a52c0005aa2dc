"""The cost of one request without HTTP: CPU time per request through the app's WSGI callable
(werkzeug's EnvironBuilder environ, every hook and the database as served), for the bare /healthz
route, GET /api/v1/me, POST /footprints/preview (five activities) and GET /scenes/resolve cached
and uncached (SQLite, the demo seed). Each figure is the least CPU time (``time.process_time``)
of 7 rounds of 600 requests, interleaved: on a shared machine the least is the truest.

With ``BENCH_BEFORE=<another checkout>`` that checkout is measured first, each in its own process
(its code first on sys.path), so one run prints before and after.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = ("healthz", "me", "preview", "resolve cached", "resolve uncached")


def measure(rounds: int = 7, per_round: int = 600) -> dict[str, float]:
    """In this process (the checkout to measure first on sys.path): µs of CPU per request."""
    from bench_auth import SECRET, make_token
    from bench_footprint import FIVE_ACTIVITIES

    sys.path.insert(0, os.getcwd())  # the checkout measured, ahead of the one harness put first
    from flask_migrate import upgrade
    from werkzeug.test import EnvironBuilder

    from app import create_app
    from carbon import demo

    url = f"sqlite:///{tempfile.mkdtemp()}/cost.sqlite3"
    config = {"ENV": "testing", "DATABASE_URL": url, "LOG_REQUESTS": False, "SECRET_KEY": SECRET}
    app = create_app(config)
    with app.app_context():
        upgrade()
        for _ in demo.seed():
            pass
    token = make_token(url)
    cached, uncached = create_app(config), create_app({**config, "SCENE_CACHE_SECONDS": 0})
    resolve = ("GET", "/api/v1/scenes/resolve", "scene=s%3Dcdcnf21%26c%3Ddoor", None, {})
    cases = {
        "healthz": (cached, ("GET", "/healthz", None, None, {})),
        "me": (cached, ("GET", "/api/v1/me", None, None, {"Authorization": f"Bearer {token}"})),
        "preview": (cached, ("POST", "/api/v1/footprints/preview", None, json.dumps(FIVE_ACTIVITIES), {})),
        "resolve cached": (cached, resolve),
        "resolve uncached": (uncached, resolve),
    }

    def call(served, spec) -> str:
        method, path, query, body, headers = spec
        environ = EnvironBuilder(method=method, path=path, query_string=query, data=body, headers=headers,
                                 content_type="application/json" if body else None).get_environ()
        status: list[str] = []
        b"".join(served.wsgi_app(environ, lambda s, h, e=None: status.append(s)))
        return status[0]

    for name, (served, spec) in cases.items():
        served.testing = False  # as served: errors answered, not raised
        status = call(served, spec)
        if not status.startswith("200"):
            raise SystemExit(f"{name}: {status}")
    least = dict.fromkeys(cases, float("inf"))
    for _ in range(rounds):
        for name, (served, spec) in cases.items():
            started = time.process_time()
            for _ in range(per_round):
                call(served, spec)
            least[name] = min(least[name], (time.process_time() - started) / per_round * 1e6)
    return least


def main() -> None:
    if sys.argv[1:] == ["--measure"]:
        figures = measure()
        import carbon

        print(json.dumps({**figures, "code": carbon.__file__}))
        return
    before = os.environ.get("BENCH_BEFORE")
    runs = ([("before", Path(before).resolve())] if before else []) + [("after" if before else "this", HERE.parent)]
    from harness import calibration_ms

    print("## request cost in-process (SQLite): µs of CPU per request, least of 7 × 600; ratio = healthz / route")
    for label, checkout in runs:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(checkout), str(HERE)])}
        out = subprocess.run([sys.executable, str(HERE / "bench_request_cost.py"), "--measure"], cwd=checkout,
                             env=env, check=True, capture_output=True, text=True).stdout
        figures = json.loads(out.strip().splitlines()[-1])
        code = Path(figures["code"]).parent.parent  # the carbon package that was measured
        print(f"{label} ({code}), calibration {calibration_ms():.1f} ms, load average {os.getloadavg()[0]:.1f}:")
        for name in CASES:
            print(f"  {name:<18} {figures[name]:7.0f} µs   ratio {figures['healthz'] / figures[name]:4.2f}")


if __name__ == "__main__":
    main()
