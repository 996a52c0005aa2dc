"""The big screen's event stream under many viewers: database load and how soon a payment shows.

For each gunicorn configuration (2 workers; gevent, gthread with 300 threads, and the default
gthread × 4 threads), on loopback with the demo seed and the WeChat sandbox in this process:

1. SQL statements per second the workers send (counted by an SQLAlchemy event in each worker,
   ``bench/counting_app.py``) with 0, 50 and 500 viewers of one scene connected to
   ``/screen/cdcnf21/events``: flat means the same with 50 as with 500.
2. One guest pays (login, footprint, order, ``wx.requestPayment`` played by the sandbox, its notify
   confirmed inline): how long until each of the 500 viewers has an event with the new total,
   counted from the moment the payment call is made.

The viewers are raw asyncio connections (HTTP/1.0, so the stream is close-delimited). Bounded:
every phase has a deadline; the whole run takes about a minute per configuration.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import requests
from harness import ROOT, calibration_ms, free_port, guest_token, gunicorn, scratch_database

VIEWERS = 500
FEW = 50
SCENE = "cdcnf21"
PATH = f"/screen/{SCENE}/events"
WINDOW = 5.0  # seconds each statement rate is measured over


def seed(url: str) -> None:
    from app import create_app
    from carbon import demo

    app = create_app({"ENV": "testing", "DATABASE_URL": url, "LOG_REQUESTS": False})
    with app.app_context():
        list(demo.seed())


def statements(folder: Path) -> int:
    return sum(int(path.read_text() or 0) for path in folder.iterdir())


class Viewer:
    def __init__(self) -> None:
        self.first_at: float | None = None
        self.kg: str | None = None
        self.changed_at: float | None = None
        self.events = 0
        self.error: str | None = None

    async def watch(self, port: int, stop: asyncio.Event, baseline: dict) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as exc:
            self.error = type(exc).__name__
            return
        writer.write(f"GET {PATH} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
        try:
            while not stop.is_set():
                try:
                    line = await asyncio.wait_for(reader.readline(), 0.5)
                except TimeoutError:
                    continue
                if not line:
                    self.error = self.error or "closed"
                    break
                if line.startswith(b"data:"):
                    kg = json.loads(line[5:])["kg_neutralized"]
                    now = time.time()
                    self.events += 1
                    if self.first_at is None:
                        self.first_at = now
                    elif "kg" in baseline and kg != baseline["kg"] and self.changed_at is None:
                        self.changed_at = now
                    self.kg = kg
        finally:
            writer.close()


def pay(base: str, sandbox_url: str, openid: str) -> tuple[float, str]:
    """One guest's whole payment through the public API and the sandbox: the time of the tap on 支付, the order."""
    token = guest_token(base, sandbox_url, openid, scene=f"s={SCENE}")
    headers = {"Authorization": f"Bearer {token}"}
    footprint = requests.post(f"{base}/api/v1/footprints", headers=headers, timeout=30, json={
        "scene": f"s={SCENE}", "activities": [{"type": "rail", "distance_km": 300}]}).json()
    created = requests.post(f"{base}/api/v1/orders", headers={**headers, "Idempotency-Key": f"bench-{openid}"},
                            json={"footprint_id": footprint["id"], "scene": f"s={SCENE}"}, timeout=30).json()
    started = time.time()  # the guest taps 支付 now
    paid = requests.post(f"{sandbox_url}/__sandbox__/pay/request-payment", json=created["request_payment"],
                         timeout=30).json()
    if not (paid["notify"] or {}).get("acknowledged"):  # a loaded machine: the notify may outlast WeChat's 5 s
        print(f"notify not acknowledged: {paid['notify']}; waiting for the order to be paid", flush=True)
    return started, created["order"]["id"]


async def rate(folder: Path, seconds: float) -> float:
    before, started = statements(folder), time.monotonic()
    await asyncio.sleep(seconds)
    return (statements(folder) - before) / (time.monotonic() - started)


async def connect(viewers: list[Viewer], port: int, stop: asyncio.Event, baseline: dict, deadline: float,
                  tasks: list) -> int:
    for index, viewer in enumerate(viewers):
        tasks.append(asyncio.create_task(viewer.watch(port, stop, baseline)))
        if index % 50 == 49:
            await asyncio.sleep(0.05)  # not one SYN burst
    while time.monotonic() < deadline and not all(v.first_at or v.error for v in viewers):
        await asyncio.sleep(0.1)
    return sum(1 for v in viewers if v.first_at)


def paid_at(url: str, order_id: str) -> float:
    """When the service confirmed the order's payment (its commit), as a Unix time; waits up to 30 s."""
    from sqlalchemy import create_engine, select

    from carbon.checkout.models import Order

    engine = create_engine(url)
    deadline = time.monotonic() + 30
    with engine.connect() as conn:
        while (moment := conn.execute(select(Order.paid_at).where(Order.public_id == order_id)).scalar()) is None \
                and time.monotonic() < deadline:
            conn.rollback()
            time.sleep(0.2)
    engine.dispose()
    return moment.timestamp() if moment else float("nan")


class Printed(list):
    """Lines, printed as they come."""

    def append(self, line: str) -> None:
        print(line, flush=True)
        super().append(line)


async def run(port: int, api: str, sandbox_url: str, folder: Path, label: str, full: bool, url: str) -> list[str]:
    lines = Printed()
    stop, baseline, tasks = asyncio.Event(), {}, []
    idle = await rate(folder, 3.0)
    viewers = [Viewer() for _ in range(FEW)]
    began = time.monotonic()
    served = await connect(viewers, port, stop, baseline, time.monotonic() + 10, tasks)
    lines.append(f"{label}: {served}/{FEW} viewers got their first snapshot (in {time.monotonic() - began:.1f} s)")
    if not full or served < FEW:
        stop.set()
        await asyncio.gather(*tasks)
        lines.append(f"{label}: statements/s with 0 viewers {idle:.1f}; stopped: the threads are taken by {served} "
                     "streams, the rest wait (and so would every API request)")
        return lines
    few = await rate(folder, WINDOW)
    more = [Viewer() for _ in range(VIEWERS - FEW)]
    began = time.monotonic()
    served += await connect(more, port, stop, baseline, time.monotonic() + 30, tasks)
    viewers += more
    lines.append(f"{label}: {served}/{VIEWERS} viewers connected with a first snapshot "
                 f"(the last {VIEWERS - FEW} in {time.monotonic() - began:.1f} s)")
    many = await rate(folder, WINDOW)
    lines.append(f"{label}: SQL statements/s, all workers: 0 viewers {idle:.1f} · {FEW} viewers {few:.1f} · "
                 f"{VIEWERS} viewers {many:.1f}")
    events_before = sum(v.events for v in viewers)
    baseline["kg"] = viewers[0].kg  # what every viewer shows now
    tapped_at, order_id = await asyncio.to_thread(pay, api, sandbox_url, f"o_bench_{port}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(v.changed_at for v in viewers):
        await asyncio.sleep(0.05)
    confirmed_at = paid_at(url, order_id)
    for since, start in (("the tap on 支付", tapped_at), ("the payment's confirmation (orders.paid_at)", confirmed_at)):
        delays = sorted(v.changed_at - start for v in viewers if v.changed_at)
        if not delays:
            lines.append(f"{label}: no viewer saw the payment within 10 s")
            break
        lines.append(f"{label}: from {since} to the new total on each viewer: {len(delays)}/{len(viewers)} saw "
                     f"it, {sum(1 for d in delays if d <= 2.0)} within 2 s; p50 {statistics.median(delays) * 1000:.0f}"
                     f" ms, p99 {delays[min(len(delays) - 1, int(0.99 * len(delays)))] * 1000:.0f} ms, "
                     f"max {delays[-1] * 1000:.0f} ms")
    lines.append(f"{label}: the tap to the confirmation (WeChat Pay's notify, verified and confirmed): "
                 f"{(confirmed_at - tapped_at) * 1000:.0f} ms")
    lines.append(f"{label}: events sent while idle {events_before - len(viewers)} (beyond each viewer's first); "
                 f"errors {sum(1 for v in viewers if v.error)}")
    stop.set()
    await asyncio.gather(*tasks)
    return lines


def main() -> None:
    from wechat.sandbox.testing import LiveSandbox

    print(f"calibration sum(range(10**6)): {calibration_ms():.1f} ms")
    # (label, stream worker class, threads, a separate API instance, full run)
    configurations = [("gevent stream instance + gthread API", "gevent", 1, True, True),
                      ("one gthread instance, 300 threads", "gthread", 300, False, True),
                      ("one gthread instance, 4 threads (the default)", "gthread", 4, False, False)]
    only = sys.argv[2] if len(sys.argv) > 2 else None
    with scratch_database(sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "-" else None) as url, \
            LiveSandbox() as sandbox:
        seed(url)
        print(f"database: {url.split(':')[0]}; {VIEWERS} viewers of one scene; 2 gunicorn workers each")
        for label, worker_class, threads, separate, full in configurations:
            if only and only not in label:
                continue
            with tempfile.TemporaryDirectory() as counts, ExitStack() as servers:
                port = free_port()
                api_port = free_port() if separate else port
                api = f"http://127.0.0.1:{api_port}"
                env = {"DIANDIAN_DATABASE_URL": url, "DIANDIAN_WECHAT_API_BASE": sandbox.url,
                       "DIANDIAN_WECHATPAY_API_BASE": sandbox.url, "DIANDIAN_PUBLIC_BASE_URL": api,
                       "DIANDIAN_BENCH_COUNTS": counts, "DIANDIAN_LOGIN_RATE_PER_MINUTE_CLIENT": "10000",
                       "GUNICORN_CMD_ARGS": "--graceful-timeout 3"}  # open streams end at the next keep-alive
                servers.enter_context(gunicorn(env, workers=2, worker_class=worker_class, threads=threads,
                                               app_spec="bench.counting_app:create()", cwd=ROOT, port=port))
                if separate:  # the API (and the notify, and what follows a payment) on its own instance
                    servers.enter_context(gunicorn(env, workers=2, worker_class="gthread", threads=4,
                                                   app_spec="bench.counting_app:create()", cwd=ROOT, port=api_port))
                asyncio.run(run(port, api, sandbox.url, Path(counts), label, full, url))


if __name__ == "__main__":
    main()
