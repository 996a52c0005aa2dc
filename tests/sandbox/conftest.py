"""Fixtures: live sandboxes over real HTTP, a raw-HTTP helper and the real wechatpy client."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from wechatpy import WeChatClient

from wechat.sandbox.config import DEFAULT_CONFIG
from wechat.sandbox.testing import LiveSandbox

APPID, SECRET = next(iter(DEFAULT_CONFIG["APPS"].items()))
OTHER_APPID, OTHER_SECRET = "wx0f1e2d3c4b5a6978", "diandian-sandbox-other-secret"
SECRETS = {APPID: SECRET, OTHER_APPID: OTHER_SECRET}
BEIJING = timezone(timedelta(hours=8))

# Small limits and a second app, for quota, rate-limit and cross-app tests.
TUNED_CONFIG: dict[str, Any] = {
    "APPS": SECRETS,
    "TOKEN_DAILY_QUOTA": 3,
    "STABLE_FORCE_DAILY_LIMIT": 3,
    "LOGIN_PER_MINUTE": 3,
    "WXACODE_PER_MINUTE": 2,
    "TEMPLATES": {
        **DEFAULT_CONFIG["TEMPLATES"],
        "TPL_ALL_TYPES": {
            "thing1": "thing",
            "number2": "number",
            "letter3": "letter",
            "symbol4": "symbol",
            "character_string5": "character_string",
            "time6": "time",
            "date7": "date",
            "amount8": "amount",
            "phone_number9": "phone_number",
            "car_number10": "car_number",
            "name11": "name",
            "phrase12": "phrase",
        },
    },
}


class SandboxApi:
    """Raw HTTP calls to one live sandbox, the way a backend would make them."""

    def __init__(self, server: LiveSandbox, http: requests.Session) -> None:
        self.server = server
        self.url = server.url
        self.http = http
        self.appid, self.secret = APPID, SECRET
        self.other_appid, self.other_secret = OTHER_APPID, OTHER_SECRET  # an app of TUNED_CONFIG only

    def hook(self, name: str, payload: dict[str, Any] | None = None, method: str = "POST") -> requests.Response:
        return self.http.request(method, f"{self.url}/__sandbox__/{name}", json=payload, timeout=10)

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.http.get(self.url + path, params=params, timeout=10)

    def post(
        self, path: str, body: Any = None, *, token: str | None = None, data: bytes | None = None
    ) -> requests.Response:
        params = {} if token is None else {"access_token": token}
        return self.http.post(self.url + path, params=params, json=body, data=data, timeout=10)

    def token(self, appid: str = APPID, secret: str = SECRET) -> str:
        body = self.get("/cgi-bin/token", grant_type="client_credential", appid=appid, secret=secret).json()
        return body["access_token"]

    def login_code(self, openid: str, **fields: Any) -> str:
        response = self.hook("login-code", {"openid": openid, **fields})
        assert response.status_code == 200, response.text
        return response.json()["code"]

    def code_to_session(self, code: str, appid: str = APPID, secret: str = SECRET) -> dict[str, Any]:
        return self.get(
            "/sns/jscode2session", appid=appid, secret=secret, js_code=code, grant_type="authorization_code"
        ).json()

    def login(self, openid: str, appid: str = APPID, **fields: Any) -> dict[str, Any]:
        """wx.login + jscode2session; returns the session body."""
        session = self.code_to_session(self.login_code(openid, appid=appid, **fields), appid, SECRETS[appid])
        assert session.get("openid") == openid, session
        return session

    def advance(self, seconds: float) -> float:
        return self.hook("clock/advance", {"seconds": seconds}).json()["now"]

    def advance_to_next_day(self) -> None:
        """Just past the next Beijing midnight, so daily counters cannot roll over mid-test."""
        now = datetime.fromtimestamp(self.advance(0), BEIJING)
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        self.advance((midnight - now).total_seconds() + 1)


class SandboxWeChatClient(WeChatClient):
    """wechatpy's real client, re-pointed from api.weixin.qq.com to a sandbox."""

    def __init__(self, base_url: str, appid: str = APPID, secret: str = SECRET, **kwargs: Any) -> None:
        super().__init__(appid, secret, **kwargs)
        self.base_url = base_url
        self.API_BASE_URL = base_url + "/cgi-bin/"
        self.wxa.API_BASE_URL = base_url + "/"

    def fetch_access_token(self) -> dict[str, Any]:
        return self._fetch_access_token(
            url=self.base_url + "/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[LiveSandbox]:
    """The sandbox with its default config, live on a free port for the whole run."""
    with LiveSandbox() as server:
        yield server


@pytest.fixture(scope="session")
def tuned_server() -> Iterator[LiveSandbox]:
    with LiveSandbox(TUNED_CONFIG) as server:
        yield server


@pytest.fixture(scope="session")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture(autouse=True)
def fresh_sandbox(sandbox_server: LiveSandbox) -> None:
    """Every test starts from the sandbox's initial state."""
    sandbox_server.reset()


@pytest.fixture
def api(sandbox_server: LiveSandbox, http: requests.Session) -> SandboxApi:
    return SandboxApi(sandbox_server, http)


@pytest.fixture
def tuned_api(tuned_server: LiveSandbox, http: requests.Session) -> SandboxApi:
    tuned_server.reset()
    return SandboxApi(tuned_server, http)


@pytest.fixture
def make_client(api: SandboxApi) -> Callable[..., SandboxWeChatClient]:
    """wechatpy clients on a sandbox (the default one unless ``base_url`` is given)."""
    return lambda base_url=api.url, **kwargs: SandboxWeChatClient(base_url, **kwargs)


@pytest.fixture
def client(make_client: Callable[..., SandboxWeChatClient]) -> SandboxWeChatClient:
    return make_client()
