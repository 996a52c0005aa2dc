"""Several processes ask for the access token many times at once: WeChat issues exactly one.

Each process builds its own app (own engine, own wechatpy client), as gunicorn workers do;
they share only the database or Redis. Without the shared store and the refresh lock, every
process would fetch its own token and knock out the others' (WECHAT_PROTOCOLS.md 2.3).
"""
from __future__ import annotations

import multiprocessing as mp

import pytest
import requests

PROCESSES = 4
ASKS_PER_PROCESS = 25


def _worker(config: dict, start, results) -> None:
    from app import create_app
    from carbon.core import extensions as ext

    app = create_app(config)
    with app.app_context():
        gateway = ext.wechat()
        start.wait(30)
        tokens = {gateway.client.access_token for _ in range(ASKS_PER_PROCESS)}
    results.put(sorted(tokens))


@pytest.mark.slow
@pytest.mark.parametrize("token_mode", ["classic", "stable"])
def test_one_token_for_all_processes(app_config, app, sandbox, redis_url, token_mode):
    config = {**app_config, "REDIS_URL": redis_url, "WECHAT_TOKEN_MODE": token_mode}
    ctx = mp.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(config, start, results)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    start.set()
    seen = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0

    assert all(tokens == seen[0] for tokens in seen) and len(seen[0]) == 1
    stats = requests.get(f"{sandbox.url}/__sandbox__/stats", timeout=5).json()
    issued = stats["token_issued"] + stats["stable_token_issued"]
    assert issued == 1, stats
    key = "token_issued" if token_mode == "classic" else "stable_token_issued"
    assert stats[key] == 1


def test_rejected_token_is_replaced_once(app, sandbox):
    """WeChat invalidates every token: the next call refreshes once and succeeds."""
    from carbon.core import extensions as ext

    with app.app_context():
        gateway = ext.wechat()
        first = gateway.client.access_token
        requests.post(f"{sandbox.url}/__sandbox__/tokens/invalidate", timeout=5)
        verdict = gateway.check_text("你好", openid=_logged_in_openid(sandbox))
        assert verdict.passed
        assert gateway.client.access_token != first


def _logged_in_openid(sandbox) -> str:
    """msg_sec_check v2 needs an openid that visited recently: log one in at the sandbox."""
    code = requests.post(f"{sandbox.url}/__sandbox__/login-code", json={"openid": "o_visitor"}, timeout=5).json()["code"]
    from carbon.core import extensions as ext

    ext.wechat().exchange_code(code)
    return "o_visitor"
