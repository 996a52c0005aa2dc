"""The service under gunicorn (several worker processes) for reliability tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def gunicorn_service(database_url: str, sandbox_url: str, *, workers: int = 4,
                     extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """``app:create_app()`` under gunicorn on a free port, its notify URL pointing at itself."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DIANDIAN_ENV": "testing", "DIANDIAN_DATABASE_URL": database_url,
           "DIANDIAN_WECHAT_API_BASE": sandbox_url, "DIANDIAN_WECHATPAY_API_BASE": sandbox_url,
           "DIANDIAN_PUBLIC_BASE_URL": base, "DIANDIAN_LOG_REQUESTS": "0",
           "DIANDIAN_SECRET_KEY": "test-secret-key-for-diandian-tests-0001",
           "DIANDIAN_LOGIN_RATE_PER_MINUTE_CLIENT": "100000", "DIANDIAN_LOGIN_RATE_PER_MINUTE_OPENID": "100000",
           **(extra_env or {})}
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", str(workers), "-k", "gthread",
                                "--threads", "8", "-b", f"127.0.0.1:{port}", "--log-level", "warning",
                                "app:create_app()"], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 30
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
        process.wait(15)
