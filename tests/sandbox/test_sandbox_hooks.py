"""Failure injection, call log, stats, clock, reset, the command line and import isolation."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from wechatpy.exceptions import WeChatClientException

import wechat.sandbox

LOGIN = "/sns/jscode2session"
SANDBOX_DIR = Path(wechat.sandbox.__file__).parent
REPO_ROOT = SANDBOX_DIR.parent.parent


def test_failures_answer_the_next_calls_then_stop(api, client):
    armed = api.hook("failures", {"path": LOGIN, "errcode": -1, "count": 2}).json()
    assert armed == {"path": LOGIN, "errcode": -1, "remaining": 2}
    code = api.login_code("o-alice")
    for _ in range(2):
        body = api.code_to_session(code)
        assert body["errcode"] == -1
        assert body["errmsg"].startswith("system error rid: ")
    assert client.wxa.code_to_session(code)["openid"] == "o-alice"  # the code was not consumed


def test_failures_on_protected_paths_and_clearing(api, client):
    api.hook("failures", {"path": "/wxa/msg_sec_check", "errcode": 45011, "count": 5})
    with pytest.raises(WeChatClientException) as caught:
        client.wxa.check_text_security("hi")
    assert caught.value.errcode == 45011
    assert api.hook("failures", method="DELETE").json() == {"cleared": True}
    assert client.wxa.check_text_security("hi")["errcode"] == 0


def test_failure_hook_validates_input(api):
    assert api.hook("failures", {"path": "sns/jscode2session", "errcode": -1}).status_code == 400
    assert api.hook("failures", {"path": LOGIN, "errcode": "busy"}).status_code == 400
    assert api.hook("failures", {"path": LOGIN, "errcode": -1, "count": 0}).status_code == 400


def test_calls_are_recorded_with_query_json_and_content_type(api):
    token = api.token()
    api.post("/wxa/msg_sec_check", {"content": "hi"}, token=token)
    calls = api.hook("calls", method="GET").json()["calls"]
    assert [(c["method"], c["path"]) for c in calls] == [("GET", "/cgi-bin/token"), ("POST", "/wxa/msg_sec_check")]
    assert calls[0]["query"]["grant_type"] == "client_credential"
    assert calls[0]["json"] is None
    assert calls[1] | {"at": None} == {
        "method": "POST",
        "path": "/wxa/msg_sec_check",
        "query": {"access_token": token},
        "json": {"content": "hi"},
        "content_type": "application/json",
        "at": None,
    }
    assert calls[0]["at"] <= calls[1]["at"]
    assert api.hook("calls?path=/cgi-bin/token", method="GET").json()["calls"] == calls[:1]


def test_stats(api):
    api.token()
    api.token()
    api.post("/cgi-bin/stable_token", {"grant_type": "client_credential", "appid": api.appid, "secret": api.secret})
    api.code_to_session("nope")
    assert api.hook("stats", method="GET").json() == {
        "token_issued": 2,
        "stable_token_issued": 1,
        "calls_by_path": {"/cgi-bin/token": 2, "/cgi-bin/stable_token": 1, LOGIN: 1},
    }


def test_clock_advance(api):
    before = api.advance(0)
    after = api.advance(3600)
    assert 3600 <= after - before < 3605
    assert api.hook("clock/advance", {"seconds": -1}).status_code == 400


def test_reset_restores_the_initial_state(api):
    api.login("o-bob")
    token = api.token()
    api.hook("failures", {"path": LOGIN, "errcode": -1})
    api.hook("content/blocklist", {"words": {}})
    api.advance(86400)
    assert api.hook("reset").json() == {"reset": True}
    assert api.hook("stats", method="GET").json() == {"token_issued": 0, "stable_token_issued": 0, "calls_by_path": {}}
    assert api.post("/wxa/msg_sec_check", {"content": "hi"}, token=token).json()["errcode"] == 40001
    assert api.hook("subscriptions", {"openid": "o-bob", "template_id": "TPL_CERT_ISSUED"}).status_code == 404
    assert abs(api.advance(0) - api.server.state.now()) < 5
    assert api.server.state.clock_offset == 0
    assert "session_key" in api.code_to_session(api.login_code("o-bob"))
    assert api.post("/wxa/msg_sec_check", {"content": "赌博"}, token=api.token()).json()["errcode"] == 87014


def test_login_code_hook(api, tuned_api):
    assert api.hook("login-code", {}).status_code == 400
    assert api.hook("login-code", {"openid": "o-x", "appid": "wx-unknown"}).status_code == 400
    body = api.hook("login-code", {"openid": "o-x"}).json()
    assert body["openid"] == "o-x" and len(body["code"]) == 32
    tuned_api.login_code("o-y")
    assert tuned_api.hook("login-code", {"openid": "o-y", "appid": tuned_api.other_appid}).status_code == 409
    assert api.hook("users/o-nobody/block").status_code == 404


def imported_modules(path: Path) -> list[str]:
    """Absolute names of the modules a file imports (relative imports resolved)."""
    package = ["wechat", "sandbox", *path.relative_to(SANDBOX_DIR).parent.parts]
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            names.append(".".join([*base, *([node.module] if node.module else [])]))
    return names


def test_the_code_refuses_to_import_the_backend():
    """wechat/sandbox may import only itself, the standard library and general packages."""
    sources = sorted(SANDBOX_DIR.rglob("*.py"))
    assert len(sources) >= 8
    forbidden = [
        f"{path.relative_to(SANDBOX_DIR)}: {name}"
        for path in sources
        for name in imported_modules(path)
        if name.split(".")[0] in {"carbon", "payments", "schemas", "app"}
        or (name.split(".")[0] == "wechat" and name != "wechat.sandbox" and not name.startswith("wechat.sandbox."))
    ]
    assert forbidden == []


def run_cli(*args, env=None, **popen):
    return subprocess.Popen(
        [sys.executable, "-m", "wechat.sandbox", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def test_cli_refuses_production():
    process = run_cli("--port", "0", env={"DIANDIAN_ENV": "production"})
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 2
    assert "DIANDIAN_ENV=production" in stderr


def test_cli_serves_the_given_app():
    process = run_cli("--port", "0", "--appid", "wxcli0000000001", "--secret", "cli-secret",
                      env={"DIANDIAN_ENV": "development"})
    try:
        line = process.stdout.readline()
        assert line.startswith("WeChat sandbox listening on http://127.0.0.1:")
        url = line.split()[-1]
        params = {"grant_type": "client_credential", "appid": "wxcli0000000001", "secret": "cli-secret"}
        assert requests.get(url + "/cgi-bin/token", params=params, timeout=5).json()["expires_in"] == 7200
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_delay_slows_the_apis_under_its_prefix_then_serves_them(api, client):
    armed = api.hook("delay", {"prefix": "/sns/", "seconds": 0.6}).json()
    assert armed == {"delays": {"/sns/": 0.6}}
    code = api.login_code("o-slow")
    with pytest.raises(requests.Timeout):  # the caller gives up; the call is still served after the wait
        requests.get(f"{api.url}{LOGIN}", timeout=0.2, params={"appid": "x", "secret": "y", "js_code": code,
                                                              "grant_type": "authorization_code"})
    assert api.hook("delay", {"prefix": "/sns/", "seconds": 0}).json() == {"delays": {}}
    assert client.wxa.code_to_session(api.login_code("o-slow"))["openid"] == "o-slow"
    api.hook("delay", {"prefix": "/", "seconds": 5})
    assert api.hook("delay", method="DELETE").json() == {"delays": {}}
    assert client.wxa.code_to_session(api.login_code("o-slow"))["openid"] == "o-slow"


def test_delay_hook_validates_input(api):
    assert api.hook("delay", {"prefix": "sns", "seconds": 1}).status_code == 400
    assert api.hook("delay", {"prefix": "/__sandbox__/", "seconds": 1}).status_code == 400
    assert api.hook("delay", {"seconds": -1}).status_code == 400
    assert api.hook("delay", {"seconds": 61}).status_code == 400
    assert api.hook("delay", {"seconds": True}).status_code == 400
