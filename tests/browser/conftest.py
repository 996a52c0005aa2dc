"""Browser tests: the app and the WeChat sandbox served for real on loopback ports, driven by
Playwright with Debian's Chromium (never ``playwright install``; see docs/DEVELOPERS.md).

Fixtures, for any page of the app (console, big screen, simulator):

- ``live_server``: a fresh app on ``127.0.0.1:<free port>`` (threaded werkzeug), its WeChat and
  WeChat Pay pointed at the session's live sandbox, ``PUBLIC_BASE_URL`` at itself (so payment
  notifications arrive). ``.url``, ``.app``, ``.sandbox``; ``.get``/``.post`` (requests).
  Tables are emptied after each test, as for ``app``.
- ``browser``: one headless Chromium for the session (``DIANDIAN_CHROMIUM`` or /usr/bin/chromium).
- ``page``: a fresh context and page per test (zh-CN, 1280×900, downloads allowed,
  ``base_url`` = the live server). Console errors and uncaught page errors are collected in
  ``page.console_errors``; any left at the end fails the test. A test that expects one removes it.
- ``phone_page``: the same at 390×844 with a touch screen (for the simulator and phone layouts).
- ``screenshot(page, name)``: saves ``<SCREENSHOTS>/<name>.png`` (full page) and returns the path;
  ``SCREENSHOTS`` is var/screenshots (or ``DIANDIAN_SCREENSHOTS``).

Without Playwright or Chromium every test here is skipped with the reason (``make test``
installs both where it can: root with apt-get).
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from bench.harness import free_port
from tests.conftest import ROOT, dispose_app, make_config

CHROMIUM_CANDIDATES = [os.environ.get("DIANDIAN_CHROMIUM", ""), "/usr/bin/chromium", "/usr/lib/chromium/chromium"]
SCREENSHOTS = Path(os.environ.get("DIANDIAN_SCREENSHOTS") or ROOT / "var" / "screenshots")
LAUNCH_ARGS = ["--disable-gpu", "--disable-quic"]


def _chromium() -> str | None:
    return next((path for path in CHROMIUM_CANDIDATES if path and os.access(path, os.X_OK)), None)


def _why_no_browser() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "browser tests skipped: Playwright is not installed (pip install -e '.[test]', or make test)"
    if _chromium() is None:
        return ("browser tests skipped: no Chromium at /usr/bin/chromium (as root: apt-get install chromium "
                "fonts-wqy-microhei, which make test does)")
    return None


def pytest_collection_modifyitems(config, items) -> None:
    reason = _why_no_browser()
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.browser)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@dataclass
class LiveServer:
    url: str
    app: object
    sandbox: object

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url + path, timeout=10, **kwargs)


@pytest.fixture
def live_server_config() -> dict:
    """Extra settings for ``live_server`` (override in a test module to change them)."""
    return {}


@pytest.fixture
def live_server(database_url, sandbox, live_server_config) -> Iterator[LiveServer]:
    from app import create_app

    sandbox.reset()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    application = create_app(make_config(database_url, sandbox.url, PUBLIC_BASE_URL=url, **live_server_config))
    server = make_server("127.0.0.1", port, application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    yield LiveServer(url, application, sandbox)
    server.shutdown()
    server.server_close()
    thread.join(5)
    dispose_app(application)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=_chromium(), args=LAUNCH_ARGS)
        yield launched
        launched.close()


def _page(browser, live_server, **context_options):
    context = browser.new_context(base_url=live_server.url, locale="zh-CN", timezone_id="Asia/Shanghai",
                                  accept_downloads=True, **context_options)
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(
        f"console: {message.text} ({message.location.get('url', '')})"))
    page.on("pageerror", lambda error: page.console_errors.append(f"page error: {error}"))
    return context, page


def _close(context, page) -> None:
    errors = list(page.console_errors)
    context.close()
    assert not errors, f"the browser reported errors: {errors}"


@pytest.fixture
def page(browser, live_server):
    context, opened = _page(browser, live_server, viewport={"width": 1280, "height": 900})
    yield opened
    _close(context, opened)


@pytest.fixture
def phone_page(browser, live_server):
    context, opened = _page(browser, live_server, viewport={"width": 390, "height": 844}, device_scale_factor=2,
                            is_mobile=True, has_touch=True)
    yield opened
    _close(context, opened)


@pytest.fixture
def screenshot():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
