"""Resident memory per process (issue 14's aim: every process under 150 MB), from /proc: VmRSS (now)
and VmHWM (the kernel's peak for the process), in MB.

What runs, all with MALLOC_ARENA_MAX=2 and MALLOC_MMAP_THRESHOLD_=131072 as deploy/ sets them:

  create_app()     a fresh ``python`` that only calls ``create_app()`` (and, with ``--importtime``,
                   ``python -X importtime`` of it: the imports that take longest, cumulative)
  gunicorn         deploy/gunicorn.conf.py serving ``app:create_app()`` (2 gthread workers × 4 threads)
  flask worker     the lanes as deploy/ runs them (``-q inbox``, ``-q default``)

against a fresh PostgreSQL database (``--admin-url``; ``--sqlite`` for a SQLite file instead) seeded
with the demo, Redis (``--redis``, default ``BENCH_REDIS_URL`` or db 2; the bench empties it;
``none`` runs without it: then the workers' sweeps dispatch) and the WeChat sandbox in its own
process. Figures are taken when every process has started (idle), then after ``--flows`` complete
guest flows (bench_forum.py's ``guest_flow``: login, scene, footprint, order, pay, paid,
certificate, card.jpg, rank), ``--concurrency`` at a time, once the outbox has drained: so the
inbox lane has confirmed payments, the default lane issued certificates, and the gunicorn workers
drew every card.jpg (on its first request). About 2-3 minutes.

Also printed: each process's RSS split into anonymous and file-backed pages, and its PSS (from
smaps_rollup), which counts a page mapped n times as 1/n each time: Pillow maps the whole font file
once more for every font size it opens, so a drawing process's RSS counts the same (shared, page
cache) font pages many times.

Usage: bench_memory.py [--flows N] [--concurrency C] [--sqlite] [--redis URL|none] [--importtime]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench_forum import SCENE, Http, children, guest_flow, prepare, status_kb
from harness import (
    MALLOC,
    ROOT,
    calibration_ms,
    free_port,
    fresh_postgres,
    gunicorn,
    job_worker,
    wechat_sandbox,
    worker_args,
)

ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2")
LANES = "inbox;default"  # as deploy/systemd and `make run` run them
AIM_MB = 150
HEAVY = ("alembic", "mako", "pygments", "flask_migrate", "fpdf", "fontTools", "PIL", "qrcode", "wechatpy", "requests",
         "rq", "redis", "cryptography", "apispec", "flask_smorest", "yaml")

FRESH_APP = """
import json, sys
from app import create_app
app = create_app({"ENV": "testing", "DATABASE_URL": sys.argv[1], "LOG_REQUESTS": False})
status = {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in open("/proc/self/status"))
          if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile")}
heavy = [name for name in sys.argv[2].split(",") if name in sys.modules]
print(json.dumps({"status": status, "modules": len(sys.modules), "heavy": heavy}))
"""


def mb(kb: int) -> str:
    return f"{kb / 1024:6.1f}"


def fresh_app(url: str, env: dict[str, str]) -> dict:
    """VmRSS/VmHWM of a process that has done nothing but ``create_app()`` (the median of 3)."""
    runs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", FRESH_APP, url, ",".join(HEAVY)], cwd=ROOT, env={**os.environ, **env},
                             capture_output=True, text=True, check=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    runs.sort(key=lambda r: r["status"]["VmRSS"])
    return runs[1]


def importtime(url: str, env: dict[str, str], top: int = 15) -> list[str]:
    """The slowest imports of ``create_app()`` (cumulative µs as ``-X importtime`` prints them), the
    first two levels below the top only, with the chain that pulled each in."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", FRESH_APP, url, ""], cwd=ROOT,
                         env={**os.environ, **env}, capture_output=True, text=True, check=True).stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _self, cumulative, name = line.split(":", 1)[1].split("|")
        rows.append(((len(name) - len(name.lstrip())) // 2, name.strip(), int(cumulative)))
    chains = []
    for i, (depth, name, cumulative) in enumerate(rows):  # a module's importer is printed after it, less deep
        chain, level = [], depth
        for outer_depth, outer, _ in rows[i + 1:]:
            if outer_depth < level:
                chain.append(outer)
                level = outer_depth
        if name.split(".")[0] in HEAVY and not any(c.split(".")[0] == name.split(".")[0] for c in chain):
            chains.append((cumulative, f"{name} <- {' <- '.join(chain[:4])}"))
    chains.sort(reverse=True)
    return [f"  {us / 1000:7.1f} ms  {what}" for us, what in chains[:top]]


def settled(pids: list[int], seconds: float = 2.0, limit: float = 90.0) -> None:
    """Wait until none of ``pids`` has grown by more than 1 MB over ``seconds`` (they have started)."""
    deadline, last = time.monotonic() + limit, {}
    while time.monotonic() < deadline:
        now = {pid: status_kb(pid).get("VmRSS", 0) for pid in pids}
        if last and all(now[p] - last.get(p, 0) < 1024 and now[p] > 40 * 1024 for p in pids):
            return
        last = now
        time.sleep(seconds)


def pss_kb(pid: int) -> int:
    """Proportional set size: a page mapped n times counts 1/n each time. Each size of a font that
    Pillow opens maps the whole font file again, and VmRSS counts its pages once per mapping."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in lines if line.startswith("Pss:")), 0)


def table(groups: dict[str, list[int]]) -> dict[str, list[tuple[int, int, int, str]]]:
    rows: dict[str, list[tuple[int, int, int, str]]] = {}
    for name, pids in groups.items():
        for kb, pid in ((status_kb(pid), pid) for pid in pids):
            if kb:
                rows.setdefault(name, []).append((kb["VmRSS"], kb["VmHWM"], pss_kb(pid),
                                                  f"{kb['RssAnon'] / 1024:.0f} + {kb['RssFile'] / 1024:.0f}"))
    return rows


def run(args: argparse.Namespace) -> None:
    env = dict(MALLOC)  # as deploy/ sets it
    print(f"calibration sum(range(10**6)): {calibration_ms():.1f} ms; load average "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}; {os.cpu_count()} cores; "
          + " ".join(f"{name}={value}" for name, value in env.items()), flush=True)
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        if args.sqlite:
            url = f"sqlite:///{stack.enter_context(tempfile.TemporaryDirectory())}/memory.sqlite3"
        else:
            url = stack.enter_context(fresh_postgres(args.admin_url, "diandian_memory"))
        prepare(url)

        fresh = fresh_app(url, env)
        status = fresh["status"]
        print(f"create_app() alone: VmRSS {mb(status['VmRSS'])} MB, VmHWM {mb(status['VmHWM'])} MB "
              f"(anonymous {mb(status['RssAnon'])}, files {mb(status['RssFile'])}); {fresh['modules']} modules; "
              f"of {', '.join(HEAVY)} imported: {', '.join(fresh['heavy']) or 'none'}", flush=True)
        if args.importtime:
            print("slowest imports of those packages in create_app() (cumulative, first import, who pulled it in):")
            for line in importtime(url, env):
                print(line)

        env |= {"DIANDIAN_DATABASE_URL": url, "DIANDIAN_JOBS": "workers",
                "DIANDIAN_LOGIN_RATE_PER_MINUTE_CLIENT": "1000000", "DIANDIAN_LOGIN_RATE_PER_MINUTE_OPENID": "100",
                "DIANDIAN_SECRET_KEY": "bench-memory-secret-key-0000000000000000",
                "DIANDIAN_LOG_LEVEL": os.environ.get("DIANDIAN_LOG_LEVEL", "WARNING")}
        if args.redis != "none":
            import redis

            redis.Redis.from_url(args.redis).flushdb()
            env["DIANDIAN_REDIS_URL"] = args.redis
        sandbox = stack.enter_context(wechat_sandbox())
        env |= {"DIANDIAN_WECHAT_API_BASE": sandbox, "DIANDIAN_WECHATPAY_API_BASE": sandbox}
        port, masters = free_port(), []
        service = stack.enter_context(gunicorn({**env, "DIANDIAN_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"},
                                               config=ROOT / "deploy" / "gunicorn.conf.py", port=port,
                                               started=masters))
        workers = {" ".join(a): stack.enter_context(job_worker(env, args=a)).pid for a in worker_args(LANES)}
        master = masters[0].pid
        groups = {"gunicorn master": [master], "gunicorn workers": children(master),
                  **{f"flask worker {name}": [pid] for name, pid in workers.items()}}
        settled([pid for pids in groups.values() for pid in pids])
        idle = table(groups)

        _status, content = Http(service).call("GET", "/api/v1/scenes/resolve?scene=" + urllib.parse.quote(SCENE, safe=""))
        scene_id = json.loads(content)["scene"]["id"]
        deadline = time.monotonic() + args.seconds
        lock, done, failed = threading.Lock(), [], []
        numbers = iter(range(10**9))

        def guest(_: int) -> None:
            with lock:
                n = next(numbers)
            flow = guest_flow(service, sandbox, f"o_memory_{n:05d}", scene_id, deadline)
            with lock:
                (failed if flow.error else done).append(flow)

        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(guest, range(args.flows)))
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        stack.callback(engine.dispose)
        for _ in range(120):  # the default lane may still be pushing
            with engine.connect() as connection:
                pending = connection.scalar(text("SELECT count(*) FROM outbox_events WHERE status = 'pending'"))
            if not pending:
                break
            time.sleep(0.5)
        with engine.connect() as connection:
            pictures = connection.execute(text("SELECT kind, count(*), avg(length(content)) FROM certificate_images "
                                               "GROUP BY kind ORDER BY kind")).all()
        after = table(groups)
        print(f"{len(done)} complete guest flows ({len(failed)} failed"
              + (f": {failed[0].error}" if failed else "") + f", {args.concurrency} at a time); outbox pending "
              f"{pending}; pictures stored: " + ", ".join(f"{kind} {n} × {float(size) / 1024:.0f} KB" for kind, n, size
                                                       in pictures))
        print(f"{'process (MB)':<34} {'idle RSS':>9} {'RSS after':>10} {'anon + file':>12} {'peak (HWM)':>11} "
              f"{'PSS after':>10}   peak under {AIM_MB} MB?")
        largest = 0
        for name, rows in after.items():
            for i, (rss, hwm, pss, split) in enumerate(rows):
                idle_rss = idle[name][i][0] if i < len(idle.get(name, ())) else 0
                largest = max(largest, hwm)
                print(f"{name + (f' {i + 1}' if len(rows) > 1 else ''):<34} {mb(idle_rss):>9} {mb(rss):>10} "
                      f"{split:>12} {mb(hwm):>11} {mb(pss):>10}   {'yes' if hwm < AIM_MB * 1024 else 'NO'}")
        print(f"largest peak {largest / 1024:.0f} MB (aim < {AIM_MB}); load average now "
              f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}; calibration {calibration_ms():.1f} ms; "
              f"took {time.monotonic() - began:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=40, help="complete guest flows (default 40)")
    parser.add_argument("--concurrency", type=int, default=4, help="guests at once (default 4)")
    parser.add_argument("--seconds", type=float, default=240.0, help="give up on flows after this (default 240)")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file instead of a fresh PostgreSQL database")
    parser.add_argument("--admin-url", default=ADMIN_URL)
    parser.add_argument("--redis", default=REDIS_URL, help="an URL, or none")
    parser.add_argument("--importtime", action="store_true", help="also python -X importtime of create_app()")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
