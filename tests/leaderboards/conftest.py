"""Leaderboard fixtures: a live service (with Redis when the run has one) and a way to pay."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import make_config
from tests.payments.conftest import LiveService, guest_token, serve
from tests.payments.test_checkout_e2e import bearer, hook, place_order


@pytest.fixture
def live(database_url, sandbox, redis_url) -> Iterator[LiveService]:
    """The service on a real port, on Redis when ``redis_url`` is set (both modes run)."""
    with serve(database_url, sandbox, REDIS_URL=redis_url) as service:
        yield service


@pytest.fixture
def sql_only(database_url, sandbox):
    """A second app on the same database without Redis: it answers from the table."""
    from app import create_app

    return create_app(make_config(database_url, sandbox.url))


class Guests:
    def __init__(self, live, sandbox) -> None:
        self.live, self.sandbox, self.tokens, self.paid = live, sandbox, {}, 0

    def token(self, openid: str) -> str:
        if openid not in self.tokens:
            self.tokens[openid] = guest_token(self.live.url, self.sandbox, openid)
        return self.tokens[openid]

    def pay(self, openid: str, kg: str, scene: str | None = None) -> dict:
        """One order of ``kg`` paid through the sandbox; returns the order."""
        self.paid += 1
        body = {"kg": kg, **({"scene": scene} if scene else {})}
        created = place_order(self.live, self.token(openid), body, key=f"lb-{self.paid}")
        assert created.status_code == 201, created.json()
        assert hook(self.sandbox, "request-payment", created.json()["request_payment"]).json()["notify"]["acknowledged"]
        return created.json()["order"]

    def headers(self, openid: str) -> dict:
        return bearer(self.token(openid))


@pytest.fixture
def guests(live, sandbox) -> Guests:
    return Guests(live, sandbox)
