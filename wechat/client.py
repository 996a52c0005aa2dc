"""One client factory on wechatpy, pointed at WeChat or at the local sandbox.

wechatpy 1.8.18 hard-codes ``https://api.weixin.qq.com`` in places (the token URL, the
``wxa`` API base). Rather than patching each, an HTTP adapter mounted for that prefix
rewrites every request to the configured base, so the real client talks HTTP to the
sandbox exactly as it would to WeChat.
"""
from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

from carbon.core.outbound import settled
from wechat.tokens import AccessTokenManager, TokenStore

WECHAT_ORIGIN = "https://api.weixin.qq.com"


class RebaseAdapter(HTTPAdapter):
    """Sends requests addressed to WeChat to another base URL (the sandbox)."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")

    def send(self, request, **kwargs):
        if request.url.startswith(WECHAT_ORIGIN):
            request.url = self.base_url + request.url[len(WECHAT_ORIGIN):]
        return super().send(request, **kwargs)


class _SharedSession:
    """wechatpy's SessionStorage view of the shared token manager."""

    def __init__(self, client: DiandianWeChatClient) -> None:
        self.client = client

    def get(self, key, default=None):
        return self.client.tokens.get()

    def set(self, key, value, ttl=None):
        pass  # tokens are written by the manager only

    def delete(self, key):
        pass


class DiandianWeChatClient(WeChatClient):
    """WeChatClient whose access token comes from the shared, locked token manager.

    ``token_mode``: ``stable`` uses ``/cgi-bin/stable_token`` (WeChat's recommendation;
    concurrent holders get the same token), ``classic`` uses ``/cgi-bin/token``.
    wechatpy's own auto-retry is off: a rejected token is retried once by our calls.
    """

    def __init__(self, appid: str, secret: str, *, api_base: str, store: TokenStore,
                 token_mode: str = "stable", timeout: float = 5.0) -> None:
        super().__init__(appid, secret, timeout=timeout, auto_retry=False)
        self.token_mode = token_mode
        self.tokens = AccessTokenManager(store, f"{appid}_access_token", self._fetch_token)
        self.session = _SharedSession(self)
        if api_base.rstrip("/") != WECHAT_ORIGIN:
            adapter = RebaseAdapter(api_base)
            self._http.mount(WECHAT_ORIGIN, adapter)
        settled(self._http, api_base)

    @property
    def access_token(self) -> str:  # type: ignore[override]
        return self.tokens.get()

    def fetch_access_token(self):
        raise NotImplementedError("tokens are fetched by the shared manager")

    def code_to_session(self, js_code: str) -> dict:
        """``GET /sns/jscode2session`` with appid and secret only (WECHAT_PROTOCOLS.md §1.1).

        wechatpy's ``wxa.code_to_session`` goes through ``_request``, which adds ``access_token``
        and so fetches a token first: a failing token endpoint (45009, 40164, -1) would then fail
        every first login. Same session (sandbox rebase, proxies), timeout and errcode handling."""
        res = self._http.get(f"{WECHAT_ORIGIN}/sns/jscode2session", timeout=self.timeout, params={
            "appid": self.appid, "secret": self.secret, "js_code": js_code,
            "grant_type": "authorization_code"})
        try:
            res.raise_for_status()
        except requests.RequestException:
            # Never the exception's text: it names the URL, whose query holds the AppSecret.
            raise WeChatClientException(errcode=None, errmsg=f"jscode2session failed: HTTP {res.status_code}",
                                        client=self, request=None, response=None) from None
        return self._handle_result(res)  # a non-zero errcode raises WeChatClientException

    def _fetch_token(self) -> tuple[str, int]:
        if self.token_mode == "stable":
            res = self._http.post(f"{WECHAT_ORIGIN}/cgi-bin/stable_token", timeout=self.timeout, json={
                "grant_type": "client_credential", "appid": self.appid,
                "secret": self.secret, "force_refresh": False})
        else:
            res = self._http.get(f"{WECHAT_ORIGIN}/cgi-bin/token", timeout=self.timeout, params={
                "grant_type": "client_credential", "appid": self.appid, "secret": self.secret})
        try:
            res.raise_for_status()
            result = res.json()
        except (requests.RequestException, ValueError) as exc:
            # Never the exception's text: it names the URL, whose query holds the AppSecret (classic mode).
            raise WeChatClientException(errcode=None, errmsg=f"token fetch failed: HTTP {res.status_code}, "
                                        f"{type(exc).__name__}", client=self, request=None, response=None) from None
        if result.get("errcode"):
            raise WeChatClientException(result["errcode"], result.get("errmsg"), client=self,
                                        request=res.request, response=res)
        return result["access_token"], int(result.get("expires_in", 7200))
