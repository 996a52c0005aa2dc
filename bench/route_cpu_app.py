"""The service as gunicorn serves it, plus the CPU time of each request's thread by route (``time.thread_time``
from the first ``before_request`` to the last teardown), written every 0.5 s to
``$DIANDIAN_BENCH_ROUTE_CPU/<pid>.json`` as ``{"METHOD rule": [requests, cpu_seconds]}`` (bench_forum.py
adds the files up). What a request costs outside these hooks (WSGI, gunicorn) is not in it."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path


def create():
    from flask import g, request

    from app import create_app

    application = create_app()
    folder = Path(os.environ["DIANDIAN_BENCH_ROUTE_CPU"])
    spent: dict[str, list] = {}
    lock = threading.Lock()

    def start() -> None:
        g.bench_cpu_started = time.thread_time()

    application.before_request_funcs.setdefault(None, []).insert(0, start)

    def stop(_exc) -> None:
        started = g.pop("bench_cpu_started", None)
        if started is None:
            return
        key = f"{request.method} {request.url_rule.rule if request.url_rule else '(no route)'}"
        with lock:
            entry = spent.setdefault(key, [0, 0.0])
            entry[0] += 1
            entry[1] += time.thread_time() - started

    application.teardown_request_funcs.setdefault(None, []).insert(0, stop)  # they run last to first

    def write() -> None:
        path = folder / f"{os.getpid()}.json"
        while folder.exists():
            with lock:
                text = json.dumps(spent)
            try:
                path.write_text(text)
            except OSError:
                return  # the bench is over
            time.sleep(0.5)

    threading.Thread(target=write, name="bench-route-cpu", daemon=True).start()
    return application
