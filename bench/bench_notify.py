"""WeChat Pay notifications on PostgreSQL with DIANDIAN_JOBS=workers, next to a bare Flask route that
inserts one row into the same PostgreSQL (both under gunicorn as deploy/ serves them, 2 gthread
workers × 4 threads, 16 clients):

(a) acknowledgement: the notify route verifies, decrypts, checks and records in the inbox; no
    worker runs, so the figure is the route alone (interleaved with the bare route, 3 rounds);
(b) sustained notify-to-paid: the same load with `flask worker` processes confirming meanwhile;
    confirmations per second over the run (what was confirmed by the time the backlog drained);
(c) notify-to-paid latency of (b): from the inbox row's ``received_at`` to its ``processed_at``
    (the batch's commit follows at once), p50/p99;
then the outbox drain: the time from the start of (b) until every paid order of the run has its
certificate (its pictures are drawn when first asked for), and until no outbox event is pending.

The WeChat sandbox runs in its own process (pushes and mini-program codes are real HTTP calls; the
guests log in through the service first; none accepted a push, so pushes end "refused", as most do). Set
DIANDIAN_REDIS_URL to run the outbox through RQ, as production does.

Each delivery confirms a different pending payment, so every request does the whole work. The
payments belong to BENCH_GUESTS guests in turn (1,000 by default, 30 orders each: a forum's
morning has many guests with a few orders each), so consecutive notifies are for different guests,
as in a real storm; BENCH_GUESTS=1 gives every order to one guest (the bench before 2026-12-02),
whose leaderboard refreshes then sum up to all of the run's retirements. The notifications are
built here the way WeChat Pay builds them (AES-256-GCM with the APIv3 key, RSA-SHA256 with the
sandbox's WeChat Pay key). Usage: bench_notify.py [postgres admin URL].
"""
from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import secrets
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from harness import (
    ROOT,
    CpuMeter,
    fresh_postgres,
    guest_token,
    gunicorn,
    job_worker,
    load,
    pids_matching,
    summary,
    wechat_sandbox,
    worker_args,
)
from sqlalchemy import create_engine, insert, text

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ORDERS = 30_000  # enough for 3 × 5 s of (a) and 8 s of (b) at 1,500 notifies/s
# `flask worker` processes and their arguments: the lanes as deploy/ runs them (decision 0015), two
# of each on this 2-core machine; BENCH_WORKERS="inbox@-5;default" (lanes, @ a nice; a negative one
# needs root) overrides.
JOB_WORKERS: list[tuple[str, ...]] = worker_args("inbox;inbox;default;default")
OUTBOX_DRAIN_LIMIT_SECONDS = float(os.environ.get("BENCH_DRAIN_SECONDS", "1200"))
GUESTS = int(os.environ.get("BENCH_GUESTS", "1000"))  # 30 orders each


if os.environ.get("BENCH_WORKERS"):
    JOB_WORKERS = worker_args(os.environ["BENCH_WORKERS"])
APPID, MCHID = "wxd1a2b3c4d5e6f7a8", "1900000109"
APIV3_KEY = b"diandian-sandbox-apiv3-key-00001"
PUBLIC_KEY_ID = "PUB_KEY_ID_0114232020220520000000000000000001"


def openid_of(n: int) -> str:
    """The guest who pays order ``n``."""
    return f"o_bench{n % GUESTS:05d}"


def prepare(url: str) -> list[str]:
    """Migrate; GUESTS guests, one project, ORDERS pending payments (order n is guest n mod GUESTS's)
    with their held serials."""
    from flask_migrate import upgrade

    from app import create_app
    from carbon.accounts.models import User
    from carbon.checkout.models import Order, Payment
    from carbon.core.clock import utcnow
    from carbon.core.db import db
    from carbon.credits import service as credits
    from carbon.credits.models import Project, Reservation

    app = create_app({"ENV": "testing", "DATABASE_URL": url, "LOG_REQUESTS": False})
    with app.app_context():
        upgrade()
        db.session.execute(text("CREATE TABLE bench_rows (id bigserial PRIMARY KEY, body bytea, "
                                "created_at timestamptz DEFAULT now())"))
        db.session.execute(insert(User), [{"openid": openid_of(n)} for n in range(GUESTS)])
        guests = dict(db.session.execute(text("SELECT openid, id FROM users")).all())
        project = Project(registry_name="CDCER", name_zh="基准项目", name_en="Bench project", methodology="-",
                          location="-", price_per_tonne=Decimal("60.00"), unit_kg=Decimal(1))
        db.session.add(project)
        db.session.commit()
        credits.add_block(project.public_id, "2021", 1, ORDERS * 10, Decimal("60.00"))
        block_id = db.session.scalar(text("SELECT id FROM serial_blocks"))
        expires = utcnow() + timedelta(hours=1)
        numbers = [f"BENCH{n:010d}" for n in range(ORDERS)]
        db.session.execute(insert(Order), [
            {"public_id": f"ord_bench{n:07d}", "user_id": guests[openid_of(n)], "project_id": project.id, "units": 10,
             "kg": Decimal(10), "amount": Decimal("1.00"), "status": "awaiting_payment",
             "beneficiary_name": "bench", "purpose": "bench", "expires_at": expires} for n in range(ORDERS)])
        order_ids = [row[0] for row in db.session.execute(text("SELECT id FROM orders ORDER BY id"))]
        db.session.execute(insert(Payment), [
            {"order_id": order_id, "provider": "wechatpay", "out_trade_no": number, "amount": Decimal("1.00"),
             "status": "pending", "prepay_id": f"wx{number}"} for order_id, number in zip(order_ids, numbers)])
        db.session.execute(insert(Reservation), [
            {"block_id": block_id, "order_id": order_id, "first_serial": n * 10 + 1, "last_serial": n * 10 + 10,
             "status": "active", "expires_at": expires} for n, order_id in enumerate(order_ids)])
        db.session.commit()
    return numbers


def notification(n: int, out_trade_no: str, key) -> tuple[bytes, dict[str, str]]:
    transaction = {"appid": APPID, "mchid": MCHID, "out_trade_no": out_trade_no,
                   "transaction_id": "42000" + "".join(secrets.choice("0123456789") for _ in range(23)),
                   "trade_type": "JSAPI", "trade_state": "SUCCESS", "trade_state_desc": "支付成功",
                   "success_time": "2026-11-26T12:00:00+08:00", "payer": {"openid": openid_of(n)},
                   "amount": {"total": 100, "payer_total": 100, "currency": "CNY", "payer_currency": "CNY"}}
    nonce = secrets.token_hex(6)
    sealed = AESGCM(APIV3_KEY).encrypt(nonce.encode(), json.dumps(transaction).encode(), b"transaction")
    body = json.dumps({"id": f"EV-{uuid.uuid4().hex}", "create_time": "2026-11-26T12:00:00+08:00",
                       "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功",
                       "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                                    "ciphertext": base64.b64encode(sealed).decode(), "associated_data": "transaction",
                                    "nonce": nonce}}).encode()
    timestamp, header_nonce = str(int(time.time())), secrets.token_hex(16)
    signed = f"{timestamp}\n{header_nonce}\n{body.decode()}\n".encode()
    signature = base64.b64encode(key.sign(signed, padding.PKCS1v15(), hashes.SHA256())).decode()
    return body, {"Content-Type": "application/json", "Wechatpay-Timestamp": timestamp, "Wechatpay-Nonce": header_nonce,
                  "Wechatpay-Signature": signature, "Wechatpay-Serial": PUBLIC_KEY_ID,
                  "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}


def main(seconds: float = 5.0, rounds: int = 3, sustained_seconds: float = 8.0) -> None:
    admin_url = sys.argv[1] if len(sys.argv) > 1 else ADMIN_URL
    key = serialization.load_pem_private_key(
        (ROOT / "wechat" / "sandbox" / "keys" / "wechatpay_private_key.pem").read_bytes(), password=None)
    with fresh_postgres(admin_url) as url:
        numbers = prepare(url)
        prepared = [notification(n, number, key) for n, number in enumerate(numbers)]  # signed now: within the 5-minute window
        cursor = itertools.count()

        def next_notify(_i: int):
            body, headers = prepared[next(cursor)]
            return "POST", "/api/v1/payments/wechatpay/notify", body, headers

        def bare(_i: int):
            return "POST", "/insert", b'{"row": 1}', {"Content-Type": "application/json"}

        engine = create_engine(url)

        def scalar(sql: str):
            with engine.connect() as connection:
                return connection.scalar(text(sql))

        results: dict[str, list] = {"bare insert route": [], "(a) notify acknowledged": []}
        served = {"workers": 2, "worker_class": "gthread", "threads": 4}  # as deploy/gunicorn.conf.py serves
        workers: list[tuple[tuple[str, ...], int]] = []  # (arguments, pid)

        def backends() -> list[int]:
            with engine.connect() as connection:
                return list(connection.scalars(text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")))

        def lane_pids(*lanes: str) -> list[int]:
            """Workers serving one of ``lanes`` (no -q: every lane, counted as the inbox's)."""
            return [pid for args, pid in workers if set(lanes) & (set(args) or {"inbox"})]

        with contextlib.ExitStack() as servers:
            sandbox_url = servers.enter_context(wechat_sandbox())
            env = {"DIANDIAN_DATABASE_URL": url, "BENCH_DATABASE_URL": url, "DIANDIAN_JOBS": "workers",
                   "DIANDIAN_WECHAT_API_BASE": sandbox_url, "DIANDIAN_WECHATPAY_API_BASE": sandbox_url,
                   "DIANDIAN_LOGIN_RATE_PER_MINUTE_CLIENT": "1000000"}  # every guest logs in from loopback
            service = servers.enter_context(gunicorn(env, **served))
            baseline = servers.enter_context(gunicorn(env, app_spec="bare_insert:app", cwd=ROOT / "bench", **served))
            groups = {"load client": lambda: [os.getpid()],
                      "bare route": lambda: pids_matching("gunicorn", baseline.removeprefix("http://")),
                      "notify route": lambda: pids_matching("gunicorn", service.removeprefix("http://")),
                      "postgres": backends, "workers (inbox)": lambda: lane_pids("inbox"),
                      "workers (default)": lambda: [p for p in lane_pids("default") if p not in lane_pids("inbox")],
                      "wechat sandbox": lambda: pids_matching("wechat.sandbox", sandbox_url.rsplit(":", 1)[1])}
            meters = {phase: CpuMeter(groups) for phase in ("bare", "(a)", "(b)", "drain")}
            with ThreadPoolExecutor(8) as pool:  # every guest has logged in once, as a paying guest has
                list(pool.map(lambda openid: guest_token(service, sandbox_url, openid),
                              sorted({openid_of(n) for n in range(GUESTS)})))
            for _ in range(rounds):
                with meters["bare"].span():
                    results["bare insert route"].append(load("bare insert route", baseline, bare, seconds=seconds,
                                                             expect=204))
                with meters["(a)"].span():
                    results["(a) notify acknowledged"].append(load("(a) notify acknowledged", service, next_notify,
                                                                   seconds=seconds, expect=204))
            backlog = scalar("SELECT count(*) FROM payment_inbox WHERE status = 'pending'")
            with contextlib.ExitStack() as stack:
                for args in JOB_WORKERS:
                    workers.append((args, stack.enter_context(job_worker(env, args=args)).pid))
                drain_started = time.monotonic()
                while scalar("SELECT count(*) FROM payment_inbox WHERE status = 'pending'") and \
                        time.monotonic() - drain_started < 300:
                    time.sleep(0.2)
                drained_in = time.monotonic() - drain_started
                mark = scalar("SELECT max(id) FROM payment_inbox")
                # WeChat Pay's signatures are good for 5 minutes: sign (b)'s notifies again, now.
                first = next(cursor)
                need = min(len(numbers) - first, int(3 * sustained_seconds * max(r.rps for r in
                                                                                 results["(a) notify acknowledged"])))
                prepared[first:first + need] = [notification(n, numbers[n], key) for n in range(first, first + need)]
                cursor = itertools.count(first)
                started = time.monotonic()
                with meters["(b)"].span():
                    sustained = load("(b) notify, workers running", service, next_notify, seconds=sustained_seconds,
                                     expect=204)
                    while scalar("SELECT count(*) FROM payment_inbox WHERE status = 'pending'") and \
                            time.monotonic() - started < 300:
                        time.sleep(0.05)
                settled_in = time.monotonic() - started
                results["(b) notify, workers running"] = [sustained]
                with engine.connect() as connection:
                    behind = dict(connection.execute(text(
                        "SELECT handler, count(*) FROM outbox_events WHERE status = 'pending' GROUP BY 1")).all())
                    delays = [row[0] * 1000 for row in connection.execute(text(
                        "SELECT extract(epoch FROM processed_at - received_at) FROM payment_inbox WHERE id > :mark "
                        "ORDER BY 1"), {"mark": mark})]
                report_payments(results, meters, backlog, drained_in, sustained, settled_in, delays, behind)
                done_before = scalar("SELECT count(*) FROM outbox_events WHERE status = 'done'")
                settled_at = time.monotonic()
                certified_in = None
                with meters["drain"].span():
                    while time.monotonic() - started < OUTBOX_DRAIN_LIMIT_SECONDS:
                        if certified_in is None and scalar(
                                "SELECT (SELECT count(*) FROM certificates) = "
                                "(SELECT count(*) FROM payments WHERE status = 'confirmed')"):
                            certified_in = time.monotonic() - started
                        if not scalar("SELECT count(*) FROM outbox_events WHERE status = 'pending'"):
                            break
                        time.sleep(0.5)
                outbox_drained_in = time.monotonic() - started
                still_pending = scalar("SELECT count(*) FROM outbox_events WHERE status = 'pending'")
                drained_events = scalar("SELECT count(*) FROM outbox_events WHERE status = 'done'") - done_before
                outbox_rate = drained_events / max(time.monotonic() - settled_at, 1e-9)
        with engine.connect() as connection:
            confirmed = connection.scalar(text("SELECT count(*) FROM payments WHERE status = 'confirmed'"))
            retired = connection.scalar(text("SELECT coalesce(sum(quantity), 0) FROM retirements"))
            unbalanced = connection.scalar(text(
                "SELECT count(*) FROM (SELECT transaction_id, unit FROM postings GROUP BY 1, 2 "
                "HAVING sum(amount) <> 0) AS u"))
            events = connection.execute(text("SELECT status, count(*) FROM outbox_events GROUP BY 1")).all()
            pictures = connection.execute(text("SELECT (SELECT count(*) FROM certificates), "
                                               "(SELECT count(*) FROM certificate_images)")).one()
        engine.dispose()
        drain_cpu = meters["drain"].spent
        print(f"outbox drain: every certificate existed "
              f"{f'{certified_in:.1f} s' if certified_in is not None else 'not'} after (b) began; "
              f"{f'{still_pending} events still pending' if still_pending else 'no event pending'} "
              f"after {outbox_drained_in:.1f} s; {outbox_rate:.0f} events/s once the inbox was done; CPU per "
              f"outbox event then {sum(drain_cpu.values()) * 1000 / max(drained_events, 1):.1f} ms ("
              + ", ".join(f"{name} {spent * 1000 / max(drained_events, 1):.1f}" for name, spent in drain_cpu.items()
                          if spent) + ")")
        sent = sum(r.requests for runs in results.values() if runs is not results["bare insert route"] for r in runs)
        print(f"check: {sent} notifies acknowledged, {confirmed} payments confirmed, {retired} units retired, "
              f"{unbalanced} unbalanced ledger transactions, {pictures[0]} certificates, {pictures[1]} pictures, "
              f"outbox {dict(events)}")


def cpu_line(label: str, meter: CpuMeter, requests_done: int) -> str:
    spent = {name: seconds * 1000 / max(requests_done, 1) for name, seconds in meter.spent.items() if seconds}
    return (f"CPU per request, {label}: {sum(spent.values()):.2f} ms ("
            + ", ".join(f"{name} {ms:.2f}" for name, ms in spent.items()) + ")")


def report_payments(results, meters, backlog, drained_in, sustained, settled_in, delays, behind) -> None:
    """What the guest sees: printed as soon as (b) has settled, before the outbox drain."""
    bare_rps = statistics.median(r.rps for r in results["bare insert route"])
    print(summary("notify handling vs a bare one-row insert route (PostgreSQL, DIANDIAN_JOBS=workers)",
                  results, "bare insert route"))
    pairs = [n.rps / b.rps for b, n in zip(results["bare insert route"], results["(a) notify acknowledged"])]
    print(f"(a) ratio per round (each notify run over the bare run just before it): "
          f"{', '.join(f'{r:.2f}' for r in pairs)}; median {statistics.median(pairs):.2f}")
    print(f"workers: {', '.join(' '.join(('flask worker',) + args) for args in JOB_WORKERS)}")
    print(f"backlog of (a): {backlog} recorded notifies confirmed by the workers in {drained_in:.1f} s "
          f"= {backlog / drained_in:.0f} confirmations/s ({backlog / drained_in / bare_rps:.2f} of the bare route)")
    rate = sustained.requests / settled_in
    print(f"(b) sustained: {sustained.requests} notifies in {sustained.seconds:.1f} s, all confirmed "
          f"{settled_in:.1f} s after the load began = {rate:.0f} notify-to-paid/s ({rate / bare_rps:.2f} of the "
          f"bare route)")
    delays = delays or [float("nan")]
    print(f"(c) notify to paid (received_at → processed_at): p50 {delays[len(delays) // 2]:.0f} ms, "
          f"p99 {delays[int(len(delays) * 0.99)]:.0f} ms, max {delays[-1]:.0f} ms over {len(delays)} notifies")
    lag = ", ".join(f"{name.rsplit('.', 1)[-1]} {n}" for name, n in sorted(behind.items()))
    print(f"outbox behind when every payment was confirmed: {sum(behind.values())} events ({lag})")
    bare_n = sum(r.requests for r in results["bare insert route"])
    print(cpu_line("bare insert", meters["bare"], bare_n))
    print(cpu_line("(a) notify acknowledged", meters["(a)"], sum(r.requests for r in results["(a) notify acknowledged"])))
    print(cpu_line("(b) notify to paid, workers running", meters["(b)"], sustained.requests))
    lane = sum(v for k, v in meters["(b)"].spent.items() if k != "workers (default)")
    lane /= max(sustained.requests, 1)
    bare_cpu = sum(meters["bare"].spent.values()) / max(bare_n, 1)
    print(f"(b) bound by CPU alone: the bare route costs {bare_cpu * 1000:.2f} ms, a notify-to-paid without the "
          f"outbox lanes {lane * 1000:.2f} ms: at most {bare_cpu / lane:.2f} of the bare route on the same cores",
          flush=True)

if __name__ == "__main__":
    main()
