"""The organizer console (/console): server-rendered pages over the services, with a cookie session
of its own (decision 0012)."""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask, settings) -> None:
    from carbon.console.session import configure
    from carbon.console.views import bp

    configure(app, settings)
    app.register_blueprint(bp)
