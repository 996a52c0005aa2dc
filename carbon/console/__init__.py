"""The organizer console (/console): server-rendered pages over the services, with a cookie session
of its own (decision 0012)."""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask, settings) -> None:
    from carbon.console.session import configure, under_console
    from carbon.console.views import bp, page_for_any_error
    from carbon.core.http import answer_errors_with_page

    configure(app, settings)
    app.register_blueprint(bp)
    answer_errors_with_page(app, under_console, page_for_any_error)
