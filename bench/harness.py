"""Shared pieces of the HTTP benchmarks: a scratch database, gunicorn on a free loopback
port, and a bounded load client (threads with keep-alive connections) that reports
requests/s and p50/p99. Figures vary with the machine's mood: compare only ratios
measured in the same run (ABAB interleaving), as PERFORMANCE_BASELINES.md advises."""
from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# glibc's malloc as deploy/ sets it (decision in deploy/gunicorn.conf.py): two arenas, and large
# blocks (a card's pixels) always mapped and given back when freed; the environment overrides each
MALLOC = {name: os.environ.get(name, value) for name, value in (("MALLOC_ARENA_MAX", "2"),
                                                               ("MALLOC_MMAP_THRESHOLD_", "131072"))}
STARTUP_SECONDS = 120  # a gunicorn or sandbox that has not answered by then failed (a busy machine is slow)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def per_second(work: Callable[[], object], seconds: float = 2.0) -> float:
    """Calls of ``work`` per second in this process, after one warm-up call."""
    work()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(200):
            work()
        done += 200
    return done / (time.perf_counter() - started)


def calibration_ms() -> float:
    """How fast the machine is right now: one pure-Python loop, in ms."""
    started = time.perf_counter()
    sum(range(10**6))
    return (time.perf_counter() - started) * 1000


@contextmanager
def scratch_database(url: str | None = None) -> Iterator[str]:
    """A migrated database: the given URL, or a fresh SQLite file."""
    with tempfile.TemporaryDirectory() as tmp:
        url = url or f"sqlite:///{tmp}/bench.sqlite3"
        from flask_migrate import upgrade

        from app import create_app

        app = create_app({"ENV": "testing", "DATABASE_URL": url, "LOG_REQUESTS": False})
        with app.app_context():
            upgrade()
        yield url


@contextmanager
def gunicorn(env: dict[str, str], workers: int = 2, worker_class: str = "sync",
             threads: int = 1, app_spec: str = "app:create_app()", cwd: Path = ROOT,
             port: int | None = None, config: Path | None = None,
             started: list[subprocess.Popen] | None = None) -> Iterator[str]:
    """Serve ``app_spec`` (the service by default) on loopback (a free port unless given); yields the base URL.

    With ``config`` (e.g. deploy/gunicorn.conf.py) its settings serve instead of ``workers``,
    ``worker_class`` and ``threads`` (the file reads DIANDIAN_WORKERS / _THREADS / _WORKER_CLASS from
    ``env``); the master's process is appended to ``started`` when given."""
    port = port or free_port()
    full_env = {**os.environ, **env, "DIANDIAN_LOG_REQUESTS": "0"}
    shape = (["-c", str(config)] if config else
             ["-w", str(workers), "-k", worker_class, "--threads", str(threads)])
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", *shape, "-b", f"127.0.0.1:{port}", "--log-level", "warning", app_spec],
        cwd=cwd, env=full_env)
    if started is not None:
        started.append(process)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(60)


def pids_matching(*fragments: str) -> list[int]:
    """Processes whose command line contains every fragment."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if all(fragment in cmdline for fragment in fragments):
                found.append(int(entry.name))
    return found


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """CPU time so far (user + system, every thread) of each process that still exists."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / tick
    return used


class CpuMeter:
    """CPU seconds spent by named groups of processes (each group found anew by a function), summed
    over the spans measured with ``span()``: on a shared machine, what a request costs, whoever
    else runs."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.spent: dict[str, float] = dict.fromkeys(groups, 0.0)

    def snapshot(self) -> dict[str, dict[int, float]]:
        return {name: cpu_seconds(find()) for name, find in self.groups.items()}

    @contextmanager
    def span(self) -> Iterator[None]:
        before = self.snapshot()
        yield
        for name, now in self.snapshot().items():
            self.spent[name] += sum(seconds - before[name].get(pid, 0.0) for pid, seconds in now.items())


@contextmanager
def wechat_sandbox() -> Iterator[str]:
    """The WeChat sandbox in a process of its own (as `make run` starts it); yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, "-m", "wechat.sandbox", "--port", str(port)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                urllib.request.urlopen(base + "/__sandbox__/stats", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the WeChat sandbox did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(60)


def guest_token(service_url: str, sandbox_url: str, openid: str, scene: str | None = None) -> str:
    """A guest's session token: wx.login's code from the sandbox, then the service's login."""
    import requests

    code = requests.post(f"{sandbox_url}/__sandbox__/login-code", json={"openid": openid}, timeout=30).json()["code"]
    body = {"code": code} if scene is None else {"code": code, "scene": scene}
    answer = requests.post(f"{service_url}/api/v1/auth/login", json=body, timeout=30)
    answer.raise_for_status()
    return answer.json()["token"]


@contextmanager
def job_worker(env: dict[str, str], cwd: Path = ROOT, args: tuple[str, ...] = ()) -> Iterator[subprocess.Popen]:
    """``flask worker [args]`` (inbox confirmations and outbox events) as its own process; stopped on exit."""
    process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app:create_app", "worker", *args],
                               cwd=cwd, env={**os.environ, **env, "DIANDIAN_JOBS": "workers"},
                               stdout=subprocess.DEVNULL)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@contextmanager
def fresh_postgres(admin_url: str, prefix: str = "diandian_bench") -> Iterator[str]:
    """A new, empty PostgreSQL database next to ``admin_url``'s (dropped on exit); yields its URL."""
    import uuid

    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        create_engine(url).dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def worker_args(spec: str) -> list[tuple[str, ...]]:
    """``inbox,default;render@10`` → one process per ``;`` (``all`` or empty: every lane)."""
    processes = []
    for process in spec.split(";"):
        lanes, _, nice = process.partition("@")
        args = tuple(arg for lane in lanes.split(",") if lane.strip() not in ("", "all") for arg in ("-q", lane.strip()))
        processes.append(args + (("--nice", nice) if nice else ()))
    return processes


@dataclass
class LoadResult:
    name: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    server_cpu_ms: float | None = None  # CPU per answered request of the server's processes (from /proc)
    client_cpu_ms: float | None = None  # ... and of this load client

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self) -> str:
        cpu = "" if self.server_cpu_ms is None else \
            f"   CPU/req server {self.server_cpu_ms:5.2f} ms client {self.client_cpu_ms:4.2f} ms"
        return (f"{self.name:<28} {self.rps:8.0f} req/s   p50 {self.percentile(0.5):6.1f} ms   "
                f"p99 {self.percentile(0.99):6.1f} ms   errors {self.errors}{cpu}")


Request = Callable[[int], tuple[str, str, bytes | None, dict[str, str]]]  # i -> method, path, body, headers


def server_pids(base: str) -> list[int]:
    """The gunicorn master and workers serving ``base`` (started by ``gunicorn()``)."""
    return pids_matching("gunicorn", base.removeprefix("http://"))


def load(name: str, base: str, request: Request, *, concurrency: int = 16, seconds: float = 5.0,
         expect: int = 200) -> LoadResult:
    """``concurrency`` threads, each on one keep-alive connection, for ``seconds``; with the CPU
    time per answered request of the server's processes and of this client."""
    pids = server_pids(base)
    server_before, client_before = cpu_seconds(pids), time.process_time()
    result = _load(name, base, request, concurrency=concurrency, seconds=seconds, expect=expect)
    server_after, client_after = cpu_seconds(pids), time.process_time()
    if result.requests:
        spent = sum(used - server_before.get(pid, 0.0) for pid, used in server_after.items())
        result.server_cpu_ms = spent / result.requests * 1000
        result.client_cpu_ms = (client_after - client_before) / result.requests * 1000
    return result


def _load(name: str, base: str, request: Request, *, concurrency: int, seconds: float, expect: int) -> LoadResult:
    host, port = base.removeprefix("http://").split(":")
    latencies: list[float] = []
    counters = {"ok": 0, "errors": 0}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        mine: list[float] = []
        ok = errors = 0
        i = index
        while time.monotonic() < stop_at:
            method, path, body, headers = request(i)
            i += concurrency
            started = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status == expect:
                    ok += 1
                else:
                    errors += 1
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection(host, int(port), timeout=10)
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
            mine.append((time.perf_counter() - started) * 1000)
        conn.close()
        with lock:
            latencies.extend(mine)
            counters["ok"] += ok
            counters["errors"] += errors

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoadResult(name, counters["ok"], counters["errors"], time.monotonic() - started, latencies)


def median_result(results: list[LoadResult]) -> LoadResult:
    return sorted(results, key=lambda r: r.rps)[len(results) // 2]


def get(path: str, headers: dict[str, str] | None = None) -> Request:
    return lambda _i: ("GET", path, None, headers or {})


def post_json(path: str, body: dict, headers: dict[str, str] | None = None) -> Request:
    data = json.dumps(body).encode()
    return lambda _i: ("POST", path, data, {"Content-Type": "application/json", **(headers or {})})


def summary(label: str, results: dict[str, list[LoadResult]], baseline: str) -> str:
    """The median of each series, its throughput ratio to ``baseline`` (and per round, each next to the
    baseline round just before it), and the ratio of their server CPU per request (which depends
    less on what else the machine runs)."""
    lines = [f"## {label}", (f"calibration sum(range(10**6)): {calibration_ms():.1f} ms   load average "
             f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")]
    base_rps = statistics.median(r.rps for r in results[baseline])
    base_cpu = statistics.median(r.server_cpu_ms or 0.0 for r in results[baseline])
    for runs in results.values():
        mid = median_result(runs)
        rounds = ", ".join(f"{r.rps / b.rps:.2f}" for r, b in zip(runs, results[baseline], strict=False))
        cpu = statistics.median(r.server_cpu_ms or 0.0 for r in runs)
        cpu_ratio = f"   CPU ratio {base_cpu / cpu:4.2f}" if cpu else ""
        lines.append(f"{mid.line()}   ratio {statistics.median(r.rps for r in runs) / base_rps:4.2f}"
                     f"{cpu_ratio}   rounds [{rounds}]")
    return "\n".join(lines)


def checkouts() -> list[tuple[str, Path]]:
    """What the request-cost benchmarks serve: this checkout ("after"), and first, when
    ``BENCH_BEFORE`` names another checkout of the project (e.g. ``git archive main | tar -x -C DIR``),
    that one ("before"), in the same run. Its gunicorn imports its own code (the working directory
    comes first on sys.path) with this virtualenv's libraries."""
    before = os.environ.get("BENCH_BEFORE")
    return ([("before", Path(before).resolve())] if before else []) + [("after" if before else "this", ROOT)]
