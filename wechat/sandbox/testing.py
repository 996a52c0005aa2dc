"""Run the sandbox on a real port inside the test process."""
from __future__ import annotations

import threading
from typing import Any, Self

import requests
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from wechat.sandbox import create_sandbox_app
from wechat.sandbox.state import EXTENSION_KEY, SandboxState


class QuietRequestHandler(WSGIRequestHandler):
    """No access log line per request: tests make thousands of them."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class LiveSandbox:
    """The sandbox served by werkzeug's threaded server on 127.0.0.1 and a free port.

    ``start()`` then use ``url`` (no trailing slash); ``reset()`` between tests;
    ``stop()`` at the end. Also a context manager.
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.app = create_sandbox_app(config)
        self.url = ""
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> SandboxState:
        return self.app.extensions[EXTENSION_KEY]

    def start(self) -> Self:
        self._server = make_server(
            "127.0.0.1", 0, self.app, threaded=True, request_handler=QuietRequestHandler
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="wechat-sandbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = self._thread = None

    def reset(self) -> None:
        self.state.reset()

    def hook(self, name: str, payload: dict[str, Any] | None = None, method: str = "POST") -> Any:
        """Call ``/__sandbox__/<name>`` over HTTP; raises on a hook error."""
        response = requests.request(method, f"{self.url}/__sandbox__/{name}", json=payload, timeout=10)
        response.raise_for_status()
        return response.json()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
