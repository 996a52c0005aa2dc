"""The forum morning: whole guest flows against the service as deploy/ runs it, at rising
concurrency and then as a doors-open burst.

On loopback, all on this machine's cores: gunicorn with deploy/gunicorn.conf.py (``app:create_app()``)
and, as deploy/ runs it, a second one (1 worker × 4 threads) for WeChat Pay's notifications,
a fresh PostgreSQL database (created, migrated, seeded with the demo, dropped), Redis
(``BENCH_REDIS_URL``, default ``redis://127.0.0.1:6379/2``; the bench empties that database;
``none`` runs without it), the `flask worker` lanes of decision 0015 (``inbox;default``,
``--lanes`` overrides) and the WeChat sandbox in its own process. A guest's flow is what the
mini-program does (carbon/simulator/static/simulator.js), through the public API only:

  login      wx.login's code from the sandbox, ``POST /auth/login`` with the forum's scene
  scene      ``GET /scenes/resolve`` (the forum's page)
  footprint  ``POST /footprints`` (one rail trip)
  order      ``POST /orders`` (Idempotency-Key)
  pay        wx.requestPayment played by the sandbox: it pays and sends the signed notify
  paid       polling ``GET /orders/<id>/status`` until paid (the inbox worker confirmed it), after
             0.3, 0.5, 0.8, 1.2 s, then every 2 s
  certificate polling it on until fulfilled (the default lane issued the certificate), then
             ``GET /certificates/<no>`` (the number is in the status, as the simulator does)
  card       ``GET /certificates/<no>/card.jpg`` (a JPEG; drawn by this first request, then stored)
  rank       ``GET /leaderboards/me`` for the forum

Phases (after one warm-up flow, which waits for the workers to have started): a bare Flask JSON route (``bench/bare_insert.py``'s ``/healthz``, same gunicorn settings)
for 5 s; closed-loop steps (each of C guests starts a new flow as soon as one ends); a burst of
``--guests`` arrivals in ``--duration`` seconds (open loop: 5 % in the first 1/30, 65 % by the
first quarter, 85 % by half, the rest to the end); the bare route again. Printed: flows/s, p50/p99
per step, errors by kind, CPU per flow by process group (from /proc: it does not depend on who else
uses the machine), peak resident memory of every process, the calibration loop, the database's
checks (every order paid once, one certificate per order, the ledger balanced).

Usage: bench_forum.py [--quick] [--guests N] [--duration S] [--steps 4,8,16] [--step-seconds S]
[--lanes SPEC] [--admin-url URL] [--notify-on-app]; DIANDIAN_WORKERS / DIANDIAN_THREADS in the environment reach
deploy/gunicorn.conf.py. Stops by itself: every phase has a deadline.
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from harness import (
    MALLOC,
    ROOT,
    CpuMeter,
    calibration_ms,
    free_port,
    fresh_postgres,
    get,
    gunicorn,
    job_worker,
    load,
    wechat_sandbox,
    worker_args,
)

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2")
SCENE = "s=cdcnf21"  # the demo's forum (carbon/demo.py)
STEPS = ("login", "scene", "footprint", "order", "pay", "paid", "certificate", "card", "rank")
POLL_SECONDS = (0.3, 0.5, 0.8, 1.2, 2.0)  # a waiting guest asks again after these, then every 2 s (as the simulator)
WAIT_SECONDS = 60.0  # a guest gives up waiting for "paid" or the certificate after this
LANES = "inbox;default"  # as deploy/systemd and `make run` run them
# The burst's cumulative arrivals: (share of the duration, share of the guests); doors open at 0.
BURST_SHAPE = ((0.0, 0.0), (1 / 30, 0.05), (0.25, 0.65), (0.5, 0.85), (1.0, 1.0))


# ---- one guest ----------------------------------------------------------------------------------


class Http:
    """One guest's keep-alive connection to one server (a phone has its own)."""

    def __init__(self, base: str, timeout: float = 30.0) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.host, self.port, self.timeout = host, int(port), timeout
        self.conn: http.client.HTTPConnection | None = None
        self.requests = 0

    def call(self, method: str, path: str, body: dict | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {**({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})}
        for attempt in (1, 2):  # a keep-alive connection the server closed meanwhile: once more, afresh
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                response = self.conn.getresponse()
                content = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 2:
                    raise
                continue
            except (OSError, http.client.HTTPException):
                self.close()
                raise
            self.requests += 1
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return response.status, content
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class StepFailed(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass
class Flow:
    openid: str
    timings: dict[str, float] = field(default_factory=dict)  # step -> ms
    error: str | None = None
    order_id: str | None = None
    number: str | None = None
    requests: int = 0
    started: float = 0.0
    ended: float = 0.0
    late_ms: float = 0.0  # burst: how long after its arrival time the guest could start


def guest_flow(service_url: str, sandbox_url: str, openid: str, scene_id: str, give_up_at: float) -> Flow:
    """One guest's whole path through the public API; every step timed, the first failure recorded."""
    flow = Flow(openid, started=time.monotonic())
    api, wechat = Http(service_url), Http(sandbox_url)
    auth: dict[str, str] = {}

    def step(name: str, method: str, path: str, body: dict | None = None, expect: int = 200,
             headers: dict | None = None, on: Http | None = None) -> dict | bytes:
        if time.monotonic() > give_up_at:
            raise StepFailed(f"{name}: the phase's deadline passed")
        started = time.perf_counter()
        try:
            status, content = (on or api).call(method, path, body, {**auth, **(headers or {})})
        except (OSError, http.client.HTTPException) as exc:
            raise StepFailed(f"{name}: {type(exc).__name__}") from exc
        flow.timings[name] = flow.timings.get(name, 0.0) + (time.perf_counter() - started) * 1000
        if status != expect:
            try:
                code = json.loads(content).get("error", {}).get("code", "")
            except (ValueError, AttributeError):
                code = ""
            raise StepFailed(f"{name}: HTTP {status} {code}".rstrip())
        return content if content[:1] not in (b"{", b"[") else json.loads(content)

    polls = []  # one back-off sequence from paying to the certificate

    def wait(name: str, check: Callable[[], object]) -> object:
        started = time.perf_counter()
        while True:
            found = check()
            if found:
                flow.timings[name] = (time.perf_counter() - started) * 1000  # the wait, polls included
                return found
            if time.perf_counter() - started > WAIT_SECONDS or time.monotonic() > give_up_at:
                raise StepFailed(f"{name}: not within {WAIT_SECONDS:.0f} s")
            time.sleep(POLL_SECONDS[min(len(polls), len(POLL_SECONDS) - 1)])
            polls.append(1)

    try:
        code = step("login", "POST", "/__sandbox__/login-code", {"openid": openid}, on=wechat)["code"]
        flow.timings["login"] = 0.0  # wx.login is the phone's; the step is the service's login
        auth["Authorization"] = "Bearer " + step("login", "POST", "/api/v1/auth/login",
                                                 {"code": code, "scene": SCENE})["token"]
        step("scene", "GET", "/api/v1/scenes/resolve?scene=" + urllib.parse.quote(SCENE, safe=""))
        footprint = step("footprint", "POST", "/api/v1/footprints", {
            "kind": "event", "scene": SCENE, "activities": [{"type": "rail", "distance_km": 300}]}, expect=201)
        created = step("order", "POST", "/api/v1/orders", {"footprint_id": footprint["id"], "scene": SCENE,
                                                          "beneficiary_name": "论坛嘉宾"}, expect=201,
                       headers={"Idempotency-Key": f"forum-{openid}"})
        flow.order_id = order_id = created["order"]["id"]
        paid = step("pay", "POST", "/__sandbox__/pay/request-payment", created["request_payment"], on=wechat)
        if not (paid.get("notify") or {}).get("acknowledged"):
            flow.timings.setdefault("notify_unacknowledged", 1.0)  # WeChat Pay retries; the guest still waits
        seen = {}

        def status(waiting_for: str) -> str:  # a poll's time is part of the wait (which sets the step's time)
            seen.update(step(waiting_for, "GET", f"/api/v1/orders/{order_id}/status"))
            return seen["status"]

        wait("paid", lambda: status("paid") in ("paid", "fulfilled"))
        wait("certificate", lambda: seen["status"] == "fulfilled" or status("certificate") == "fulfilled")
        flow.number = number = seen["certificate_number"]
        shown = step("certificate", "GET", f"/api/v1/certificates/{number}")  # then the simulator shows it
        if shown.get("order_id") != order_id:
            raise StepFailed("certificate: not the order's")
        card = step("card", "GET", f"/api/v1/certificates/{number}/card.jpg")
        if card[:3] != b"\xff\xd8\xff":
            raise StepFailed("card: not a JPEG")
        me = step("rank", "GET", f"/api/v1/leaderboards/me?scene={scene_id}&period=all")
        if me.get("rank") is None:
            raise StepFailed("rank: not on the board")
    except StepFailed as failed:
        flow.error = failed.kind
    except (KeyError, TypeError, ValueError) as exc:
        flow.error = f"unexpected answer: {type(exc).__name__} {exc}"[:120]
    finally:
        flow.requests = api.requests + wechat.requests
        api.close()
        wechat.close()
        flow.ended = time.monotonic()
    return flow


# ---- load shapes --------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    flows: list[Flow]
    seconds: float
    cpu: dict[str, float]  # group -> CPU seconds over the phase

    @property
    def done(self) -> list[Flow]:
        return [f for f in self.flows if f.error is None]

    def rate(self) -> float:
        return len(self.done) / self.seconds


def closed_loop(name: str, service: str, sandbox: str, scene_id: str, concurrency: int, seconds: float,
                meter: CpuMeter, counter: Callable[[], int]) -> Phase:
    """``concurrency`` guests, each starting a new flow when one ends, for ``seconds`` (then they finish)."""
    flows: list[Flow] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def guest() -> None:
        while time.monotonic() < stop_at:
            flow = guest_flow(service, sandbox, f"o_forum_{counter()}", scene_id, stop_at + 2 * WAIT_SECONDS)
            with lock:
                flows.append(flow)

    started = time.monotonic()
    with meter.span():
        threads = [threading.Thread(target=guest) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return Phase(name, flows, time.monotonic() - started, dict(meter.spent))


def arrivals(guests: int, duration: float) -> list[float]:
    """Seconds after the doors open at which each guest arrives, following BURST_SHAPE."""
    times = []
    for i in range(guests):
        share = (i + 0.5) / guests
        for (t0, c0), (t1, c1) in itertools.pairwise(BURST_SHAPE):
            if share <= c1:
                times.append(duration * (t0 + (t1 - t0) * (share - c0) / (c1 - c0)))
                break
    return times


def burst(service: str, sandbox: str, scene_id: str, guests: int, duration: float, meter: CpuMeter,
          counter: Callable[[], int], most_at_once: int = 400) -> Phase:
    """Open loop: each guest starts at their arrival time (later if ``most_at_once`` are already walking)."""
    schedule = arrivals(guests, duration)
    give_up_at = time.monotonic() + duration + 2 * WAIT_SECONDS
    flows: list[Flow] = []
    lock = threading.Lock()

    def guest(due: float) -> None:
        late = (time.monotonic() - due) * 1000
        flow = guest_flow(service, sandbox, f"o_forum_{counter()}", scene_id, give_up_at)
        flow.late_ms = late
        with lock:
            flows.append(flow)

    started = time.monotonic()
    with meter.span(), ThreadPoolExecutor(most_at_once) as pool:
        for offset in schedule:
            due = started + offset
            if (pause := due - time.monotonic()) > 0:
                time.sleep(pause)
            pool.submit(guest, due)
    return Phase(f"burst: {guests} guests in {duration:.0f} s", flows, time.monotonic() - started, dict(meter.spent))


# ---- what the processes hold --------------------------------------------------------------------


NOT_THE_SERVICE = ("load client", "wechat sandbox", "bare route (gunicorn)")  # not ours in production


def status_kb(pid: int) -> dict[str, int]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in lines)
            if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem")}


class MemorySampler:
    """Peak resident memory per process (VmHWM; for PostgreSQL's backends their private pages, RssAnon,
    since their shared buffers are one segment for all) and the peak of each group's total, sampled."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]], private: set[str]) -> None:
        self.groups, self.private = groups, private
        self.peak: dict[tuple[str, int], int] = {}
        self.total: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        for name, find in self.groups.items():
            total = 0
            for pid in find():
                kb = status_kb(pid)
                if not kb:
                    continue
                now = kb.get("RssAnon", 0) if name in self.private else kb.get("VmRSS", 0)
                peak = now if name in self.private else max(kb.get("VmHWM", 0), now)
                self.peak[(name, pid)] = max(self.peak.get((name, pid), 0), peak)
                total += now
            self.total[name] = max(self.total.get(name, 0), total)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            with contextlib.suppress(Exception):
                self.sample()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()

    def lines(self) -> list[str]:
        out = []
        for name in self.groups:
            each = sorted(kb for (group, _), kb in self.peak.items() if group == name)
            if each:
                out.append(f"  {name:<30} {len(each):3d} processes, largest {each[-1] / 1024:6.1f} MB, "
                           f"peak total {self.total.get(name, 0) / 1024:7.1f} MB "
                           f"[{', '.join(f'{kb / 1024:.0f}' for kb in each[-8:])}]")
        return out

    def largest_mb(self, leaving: tuple[str, ...] = NOT_THE_SERVICE) -> float:
        """The largest peak of the service's own processes (not the load client's or the sandbox's)."""
        return max((kb for (group, _), kb in self.peak.items() if group not in leaving), default=0) / 1024


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


# ---- printing -----------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def report(phase: Phase, bare_rps: float, bare_cpu_ms: float) -> list[str]:
    done, failed = phase.done, [f for f in phase.flows if f.error]
    requests = sum(f.requests for f in done) / max(len(done), 1)
    cpu = {name: seconds * 1000 / max(len(done), 1) for name, seconds in phase.cpu.items() if seconds}
    lines = [f"{phase.name}: {len(done)} flows complete in {phase.seconds:.1f} s = {phase.rate():.1f} flows/s "
             f"({phase.rate() * requests:.0f} req/s, {requests:.1f} requests per flow with the polls, "
             f"{phase.rate() * requests / bare_rps:.2f} of the bare route's req/s); "
             f"errors {len(failed)}" + (f" {dict(Counter(f.error for f in failed).most_common(6))}" if failed else "")]
    lines.append("  p50/p99 ms  " + "  ".join(
        f"{s} {pct([f.timings[s] for f in done if s in f.timings], 0.5):.0f}/"
        f"{pct([f.timings[s] for f in done if s in f.timings], 0.99):.0f}" for s in STEPS)
        + f"  whole flow {pct([(f.ended - f.started) * 1000 for f in done], 0.5):.0f}/"
          f"{pct([(f.ended - f.started) * 1000 for f in done], 0.99):.0f}")
    if any(f.late_ms for f in phase.flows):
        lines.append(f"  start lag after arrival p50 {pct([f.late_ms for f in phase.flows], 0.5):.0f} ms, "
                     f"p99 {pct([f.late_ms for f in phase.flows], 0.99):.0f} ms; notifies not acknowledged at "
                     f"once {sum(1 for f in phase.flows if 'notify_unacknowledged' in f.timings)}")
    total = sum(cpu.values())
    lines.append(f"  CPU per complete flow {total:.1f} ms = {total / bare_cpu_ms:.0f} bare requests ("
                 + ", ".join(f"{name} {ms:.1f}" for name, ms in cpu.items()) + ")")
    cores = os.cpu_count() or 1
    used = sum(phase.cpu.values()) / phase.seconds
    lines.append(f"  the bench's processes used {used:.2f} of the {cores} cores (the rest went to whatever else "
                 f"runs here); at this CPU per flow the {cores} cores alone would give at most "
                 f"{cores * 1000 / max(total, 1e-9):.1f} flows/s")
    return lines


def route_cpu(folder: Path) -> dict[str, list]:
    """``{"METHOD rule": [requests, cpu_seconds]}`` summed over the service's workers (bench/route_cpu_app.py)."""
    total: dict[str, list] = {}
    for path in folder.glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            for key, (n, seconds) in json.loads(path.read_text()).items():
                entry = total.setdefault(key, [0, 0.0])
                entry[0] += n
                entry[1] += seconds
    return total


def route_lines(before: dict, after: dict, flows: int, top: int = 10) -> list[str]:
    delta = {k: (n - before.get(k, [0, 0.0])[0], s - before.get(k, [0, 0.0])[1]) for k, (n, s) in after.items()}
    delta = {k: v for k, v in delta.items() if v[0]}
    ranked = sorted(delta.items(), key=lambda kv: -kv[1][1])[:top]
    inside = sum(s for _, s in delta.values())
    return [f"  route CPU in the request threads: {inside * 1000 / max(flows, 1):.1f} ms per flow; by route, ms per "
            "flow (requests per flow, ms per request): " + "; ".join(
                f"{k} {s * 1000 / max(flows, 1):.1f} ({n / max(flows, 1):.1f}, {s * 1000 / n:.2f})"
                for k, (n, s) in ranked)]


def steps_p99(phase: Phase) -> dict[str, float]:
    return {s: pct([f.timings[s] for f in phase.done if s in f.timings], 0.99) for s in STEPS}


# ---- the run ------------------------------------------------------------------------------------


def prepare(url: str) -> None:
    """Migrate and seed the demo (projects with 1,000 t of credits each, the live forum scene)."""
    from flask_migrate import upgrade

    from app import create_app
    from carbon import demo
    from carbon.core.db import db

    app = create_app({"ENV": "testing", "DATABASE_URL": url, "LOG_REQUESTS": False})
    with app.app_context():
        upgrade()
        list(demo.seed())
        db.engine.dispose()


def checks(url: str) -> dict[str, object]:
    """What the database says after the run (read with SQL, not with the service's code)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    queries = {
        "orders by status": "SELECT status, count(*) FROM orders GROUP BY 1",
        "payments by status": "SELECT status, count(*) FROM payments GROUP BY 1",
        "orders with more than one confirmed payment": "SELECT count(*) FROM (SELECT order_id FROM payments "
                                                       "WHERE status = 'confirmed' GROUP BY 1 HAVING count(*) > 1) d",
        "orders with more than one retirement transaction": "SELECT count(*) FROM (SELECT order_id FROM retirements "
                                                            "GROUP BY 1 HAVING count(DISTINCT id) > 1) d",
        "certificates": "SELECT count(*) FROM certificates",
        "orders with more than one certificate": "SELECT count(*) FROM (SELECT order_id FROM certificates "
                                                 "GROUP BY 1 HAVING count(*) > 1) d",
        "unbalanced ledger transactions": "SELECT count(*) FROM (SELECT transaction_id, unit FROM postings "
                                          "GROUP BY 1, 2 HAVING sum(amount) <> 0) u",
        "inbox by status": "SELECT status, count(*) FROM payment_inbox GROUP BY 1",
        "outbox by status": "SELECT status, count(*) FROM outbox_events GROUP BY 1",
        "postings per paid order": "SELECT round(count(*)::numeric / greatest(1, (SELECT count(*) FROM payments "
                                   "WHERE status = 'confirmed')), 2) FROM postings",
        "picture KB per certificate": "SELECT round(coalesce(sum(length(content)), 0) / 1024.0 / greatest(1, "
                                      "(SELECT count(*) FROM certificates)), 1) FROM certificate_images",
    }
    found: dict[str, object] = {}
    with engine.connect() as connection:
        for label, sql in queries.items():
            rows = connection.execute(text(sql)).all()
            found[label] = dict(rows) if "by status" in label else rows[0][0]
    engine.dispose()
    return found


@dataclass
class Run:
    phases: list[Phase]
    checks: dict[str, object]
    flows: list[Flow]
    memory_mb: float
    bare_rps: float
    warmup: Flow  # the one flow before the phases, not counted in them


def run(admin_url: str, redis_url: str, steps: list[int], step_seconds: float, guests: int, duration: float,
        lanes: str = LANES, bare_seconds: float = 5.0, drain_seconds: float = 120.0,
        database_url: str | None = None, echo: Callable[[str], None] = print, own_notify: bool = True) -> Run:
    """The whole bench; ``database_url`` (empty, migrated and seeded by ``prepare``) instead of a fresh one."""
    from sqlalchemy import create_engine, text

    echo(f"calibration sum(range(10**6)): {calibration_ms():.1f} ms; load average "
         f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}; {os.cpu_count()} cores")
    with contextlib.ExitStack() as stack:
        url = database_url or stack.enter_context(fresh_postgres(admin_url, "diandian_forum"))
        if not database_url:
            prepare(url)
        engine = create_engine(url)
        stack.callback(engine.dispose)
        env = {"DIANDIAN_DATABASE_URL": url, "BENCH_DATABASE_URL": url, "DIANDIAN_JOBS": "workers",
               "DIANDIAN_LOGIN_RATE_PER_MINUTE_CLIENT": "1000000", "DIANDIAN_LOGIN_RATE_PER_MINUTE_OPENID": "100",
               "DIANDIAN_SECRET_KEY": "bench-forum-secret-key-000000000000000",
               "DIANDIAN_LOG_LEVEL": os.environ.get("DIANDIAN_LOG_LEVEL", "WARNING"),
               **MALLOC}  # as deploy/ sets it
        if redis_url and redis_url != "none":
            import redis

            redis.Redis.from_url(redis_url).flushdb()
            env["DIANDIAN_REDIS_URL"] = redis_url
        sandbox = stack.enter_context(wechat_sandbox())
        env |= {"DIANDIAN_WECHAT_API_BASE": sandbox, "DIANDIAN_WECHATPAY_API_BASE": sandbox}
        masters: list = []
        port = free_port()  # WeChat Pay's notify_url is the service's own (DIANDIAN_PUBLIC_BASE_URL)
        routes = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        notifier: list = []

        def serve(on_port: int, started: list, **sizes: str):
            """The service on a gunicorn of deploy/'s config, its route CPU recorded (sizes: its
            DIANDIAN_WORKERS and DIANDIAN_THREADS, else the config's)."""
            return stack.enter_context(gunicorn(
                {**env, "DIANDIAN_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "DIANDIAN_BENCH_ROUTE_CPU": str(routes),
                 **{f"DIANDIAN_{name.upper()}": value for name, value in sizes.items()}},
                config=ROOT / "deploy" / "gunicorn.conf.py", started=started, port=on_port,
                app_spec="bench.route_cpu_app:create()"))
        if own_notify:  # as deploy/ runs it: WeChat Pay's notifications on a small gunicorn of their own
            notify_port = free_port()
            env["DIANDIAN_WECHATPAY_NOTIFY_URL"] = f"http://127.0.0.1:{notify_port}/api/v1/payments/wechatpay/notify"
            serve(notify_port, notifier, workers="1", threads="4")
        service = serve(port, masters)
        bare = stack.enter_context(gunicorn(env, app_spec="bare_insert:app", cwd=ROOT / "bench",
                                            config=ROOT / "deploy" / "gunicorn.conf.py", started=masters)) \
            if bare_seconds else None  # 0: no bare route (the quick test)
        workers = {" ".join(args): stack.enter_context(job_worker(env, args=args)).pid for args in worker_args(lanes)}

        def backends() -> list[int]:
            with engine.connect() as connection:
                return list(connection.scalars(text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")))

        service_master, bare_master = masters[0].pid, (masters[1].pid if bare else 0)
        sandbox_pid = [p for p in children(os.getpid()) if "wechat.sandbox" in
                       Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
        groups: dict[str, Callable[[], list[int]]] = {
            "load client": lambda: [os.getpid()],
            "gunicorn master": lambda: [service_master],
            "gunicorn workers": lambda: children(service_master),
            **({"gunicorn notify": lambda: [notifier[0].pid, *children(notifier[0].pid)]} if notifier else {}),
            **{f"worker {name}": (lambda pid=pid: [pid]) for name, pid in workers.items()},
            "wechat sandbox": lambda: sandbox_pid,
            "postgres backends": backends,
        }
        cpu_groups = {k: v for k, v in groups.items() if k != "gunicorn master"}
        cpu_groups["gunicorn workers"] = lambda: [service_master, *children(service_master)]
        memory = stack.enter_context(MemorySampler({**groups, "bare route (gunicorn)": lambda: [
            bare_master, *children(bare_master)] if bare else []}, private={"postgres backends"}))
        _status, content = Http(service).call("GET", "/api/v1/scenes/resolve?scene=" + urllib.parse.quote(SCENE, safe=""))
        scene_id = json.loads(content)["scene"]["id"]
        numbers = iter(range(10**9))
        counter_lock = threading.Lock()

        def counter() -> int:
            with counter_lock:
                return next(numbers)

        bare_meter = CpuMeter({"load client": lambda: [os.getpid()],
                               "bare gunicorn": lambda: [bare_master, *children(bare_master)] if bare else []})
        bare_runs = []

        def measure_bare(label: str) -> None:
            if bare:
                with bare_meter.span():
                    bare_runs.append(load(label, bare, get("/healthz"), seconds=bare_seconds))
                echo(bare_runs[-1].line())

        echo(f"gunicorn: deploy/gunicorn.conf.py, {len(children(service_master))} workers, "
             f"threads {os.environ.get('DIANDIAN_THREADS', '4 (the file)')}; flask worker lanes: "
             + "; ".join(workers) + f"; notify {'on its own gunicorn (1 × 4)' if notifier else 'on the app'}; "
             f"Redis {'on' if 'DIANDIAN_REDIS_URL' in env else 'off'}; "
             + " ".join(f"{name}={value}" for name, value in MALLOC.items()))
        measure_bare("bare Flask JSON route")
        bare_rps = bare_runs[0].rps if bare_runs else float("nan")
        bare_n = sum(r.requests for r in bare_runs)
        bare_cpu_ms = sum(bare_meter.spent.values()) * 1000 / bare_n if bare_n else float("nan")
        if bare_runs:
            echo(f"bare route CPU per request {bare_cpu_ms:.2f} ms ("
                 + ", ".join(f"{k} {v * 1000 / bare_n:.2f}" for k, v in bare_meter.spent.items()) + ")")
        warm = guest_flow(service, sandbox, "o_forum_warmup", scene_id, time.monotonic() + 180)  # workers up?
        echo(f"warm-up flow (not counted: the workers have started once it completes): "
             f"{(warm.ended - warm.started):.1f} s, {warm.error or 'complete'}")
        phases = []

        def outbox_drained(limit: float) -> str:
            started = time.monotonic()
            while time.monotonic() - started < limit:
                with engine.connect() as connection:
                    pending = connection.scalar(text("SELECT count(*) FROM outbox_events WHERE status = 'pending'"))
                if not pending:
                    return f"outbox drained in {time.monotonic() - started:.1f} s"
                time.sleep(0.5)
            return f"outbox: {pending} events still pending after {limit:.0f} s"

        for concurrency in steps:
            before = route_cpu(routes)
            phase = closed_loop(f"step: {concurrency} guests at once", service, sandbox, scene_id, concurrency,
                                step_seconds, CpuMeter(cpu_groups), counter)
            phases.append(phase)
            for line in report(phase, bare_rps, bare_cpu_ms) + route_lines(before, route_cpu(routes), len(phase.done)):
                echo(line)
            echo(f"  {outbox_drained(drain_seconds / max(len(steps), 1))}; calibration {calibration_ms():.1f} ms")
        if guests:
            shape = arrivals(guests, duration)
            per_10s = Counter(int(t // 10) for t in shape)
            echo(f"burst: {guests} guests in {duration:.0f} s; arrivals per second, busiest 10 s: "
                 f"{max(per_10s.values()) / 10:.1f}, mean {guests / duration:.1f}; "
                 f"{sum(1 for t in shape if t < duration / 4)} in the first {duration / 4:.0f} s")
            before = route_cpu(routes)
            phase = burst(service, sandbox, scene_id, guests, duration, CpuMeter(cpu_groups), counter)
            phases.append(phase)
            for line in report(phase, bare_rps, bare_cpu_ms) + route_lines(before, route_cpu(routes), len(phase.done)):
                echo(line)
            echo(f"  {outbox_drained(drain_seconds)}; calibration {calibration_ms():.1f} ms")
        measure_bare("bare Flask JSON route (after)")
        memory.sample()
        echo("peak resident memory (MB; postgres: private pages only):")
        for line in memory.lines():
            echo(line)
        found = checks(url)
        flows = [f for p in phases for f in p.flows]
        echo("check: " + "; ".join(f"{k} {v}" for k, v in found.items()))
        done = [f for f in flows if f.error is None]
        echo(f"check: {len(flows)} flows, {len(done)} complete, {len({f.order_id for f in done})} distinct paid "
             f"orders, {len({f.number for f in done})} distinct certificates seen by their guests")
        return Run(phases, found, flows, memory.largest_mb(),
                   statistics.median(r.rps for r in bare_runs) if bare_runs else float("nan"), warm)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 1-2 minute smoke run")
    parser.add_argument("--guests", type=int, help="burst guests (default 3000; --quick 40)")
    parser.add_argument("--duration", type=float, help="burst seconds (default 600; --quick 20)")
    parser.add_argument("--steps", help="concurrency steps, e.g. 4,8,16,32")
    parser.add_argument("--step-seconds", type=float)
    parser.add_argument("--lanes", default=os.environ.get("BENCH_WORKERS", LANES))
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_ADMIN_URL", ADMIN_URL))
    parser.add_argument("--redis", default=REDIS_URL, help="an URL, or none")
    parser.add_argument("--notify-on-app", action="store_true",
                        help="WeChat Pay's notifications to the app's gunicorn (default: one of their own, as deploy/)")
    args = parser.parse_args(argv)
    steps = [int(s) for s in (args.steps or ("2,8" if args.quick else "4,8,16,32")).split(",") if s]
    step_seconds = args.step_seconds or (10.0 if args.quick else 25.0)
    guests = args.guests if args.guests is not None else (40 if args.quick else 3000)
    duration = args.duration or (20.0 if args.quick else 600.0)
    began = time.monotonic()
    result = run(args.admin_url, args.redis, steps, step_seconds, guests, duration,
                 lanes=args.lanes, drain_seconds=30.0 if args.quick else 120.0, own_notify=not args.notify_on_app)
    best = max((p for p in result.phases if p.name.startswith("step")), key=Phase.rate, default=None)
    errors = sum(1 for f in result.flows if f.error)
    last = result.phases[-1] if guests else None
    print(f"aims: ≥ 30 flows/s: best step {best.rate() if best else float('nan'):.1f}; no errors: {errors}; "
          f"every process < 150 MB: largest of the service's {result.memory_mb:.0f} MB"
          + (f"; burst p99 < 1 s per step: worst {max(steps_p99(last).values()):.0f} ms "
             f"({max(steps_p99(last), key=steps_p99(last).get)})" if last and last.done else "")
          + f"; run took {time.monotonic() - began:.0f} s", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
