"""The service under gunicorn (several worker processes) for reliability tests, started by the
benchmarks' own launcher."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from bench.harness import free_port, gunicorn, job_worker


def service_env(database_url: str, sandbox_url: str, base: str, extra_env: dict[str, str] | None = None) -> dict:
    return {"DIANDIAN_ENV": "testing", "DIANDIAN_DATABASE_URL": database_url,
            "DIANDIAN_WECHAT_API_BASE": sandbox_url, "DIANDIAN_WECHATPAY_API_BASE": sandbox_url,
            "DIANDIAN_PUBLIC_BASE_URL": base, "DIANDIAN_SECRET_KEY": "test-secret-key-for-diandian-tests-0001",
            "DIANDIAN_LOGIN_RATE_PER_MINUTE_CLIENT": "100000", "DIANDIAN_LOGIN_RATE_PER_MINUTE_OPENID": "100000",
            **(extra_env or {})}


@contextmanager
def gunicorn_service(database_url: str, sandbox_url: str, *, workers: int = 4,
                     extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """``app:create_app()`` under gunicorn on a free port, its notify URL pointing at itself."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with gunicorn(service_env(database_url, sandbox_url, base, extra_env), workers=workers, worker_class="gthread",
                  threads=8, port=port) as served:
        yield served


@contextmanager
def worker_process(database_url: str, sandbox_url: str, base: str, extra_env: dict[str, str] | None = None,
                   args: tuple[str, ...] = ()):
    """``flask worker [args]`` for the service at ``base`` (same settings)."""
    with job_worker(service_env(database_url, sandbox_url, base, extra_env), args=args) as process:
        yield process
