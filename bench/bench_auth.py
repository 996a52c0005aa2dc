"""GET /api/v1/me (token check: one indexed read) next to the bare /healthz route, under
gunicorn (2 sync workers) with 16 keep-alive clients on loopback, interleaved 3 times; with
``BENCH_BEFORE=<another checkout>`` that checkout first, in the same run (harness.checkouts)."""
from __future__ import annotations

import sys
from datetime import timedelta

from harness import checkouts, get, gunicorn, load, scratch_database, summary

SECRET = "bench-secret-key-0000000000000000000000"


def make_token(url: str) -> str:
    from itsdangerous import URLSafeSerializer

    from app import create_app
    from carbon.accounts.models import AuthSession, User
    from carbon.accounts.service import TOKEN_SALT
    from carbon.core.clock import utcnow
    from carbon.core.db import db

    app = create_app({"ENV": "testing", "DATABASE_URL": url, "LOG_REQUESTS": False, "SECRET_KEY": SECRET})
    with app.app_context():
        user = User(openid="o_bench")
        session = AuthSession(token_id="bench-token-id", user=user, expires_at=utcnow() + timedelta(days=1))
        db.session.add_all([user, session])
        db.session.commit()
    return URLSafeSerializer(SECRET, salt=TOKEN_SALT).dumps("bench-token-id")


def main(seconds: float = 5.0, rounds: int = 3) -> None:
    with scratch_database(sys.argv[1] if len(sys.argv) > 1 else None) as url:
        token = make_token(url)
        env = {"DIANDIAN_DATABASE_URL": url, "DIANDIAN_SECRET_KEY": SECRET}
        for label, cwd in checkouts():
            results: dict[str, list] = {"bare /healthz": [], "GET /api/v1/me": []}
            with gunicorn(env, cwd=cwd) as base:
                for _ in range(rounds):
                    results["bare /healthz"].append(load("bare /healthz", base, get("/healthz"), seconds=seconds))
                    results["GET /api/v1/me"].append(load("GET /api/v1/me", base, get(
                        "/api/v1/me", {"Authorization": f"Bearer {token}"}), seconds=seconds))
            print(summary(f"auth ({label}: {cwd}): /api/v1/me vs bare route ({url.split(':')[0]})", results,
                          "bare /healthz"), flush=True)


if __name__ == "__main__":
    main()
