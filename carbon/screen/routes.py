"""The venue big screen: ``/screen/<scene>`` (a page), its event stream, a polling snapshot, its code."""
from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, render_template, request
from sqlalchemy.exc import SQLAlchemyError

from carbon.core import extensions as ext
from carbon.core.errors import DomainError, NotFound
from carbon.rendering import qr_png
from carbon.scenes.service import h5_link
from carbon.screen import service

bp = Blueprint("screen", __name__, template_folder="templates", static_folder="static",
               static_url_path="/screen/static")
log = logging.getLogger("diandian.screen")

KEEPALIVE_SECONDS = 15.0  # a comment line this often: proxies keep the stream, a gone viewer is noticed
RETRY_MS = 2000  # how soon the browser reconnects after the stream ends or breaks
# The pages run their own scripts and call the same origin only.
SCRIPT_PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                   "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@bp.after_request
def _page_policy(response: Response) -> Response:
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = SCRIPT_PAGE_CSP
    return response


@bp.route("/screen/<string:key>")
def page(key: str):
    """The full-screen page for a projector: code to scan, progress, counters, newest certificates, top."""
    try:
        scene = service.find_scene(key)
    except DomainError as exc:
        return render_template("screen/missing.html", message=exc.message), exc.http_status
    snapshot = service.feeds().current(scene.id)
    return render_template("screen/page.html", key=key, initial=snapshot.data, etag=snapshot.etag)


@bp.route("/screen/<string:key>/events")
def events(key: str):
    """Server-sent events: one ``snapshot`` event now and whenever the scene changes, a comment every
    15 s; the stream ends after ``SCREEN_STREAM_SECONDS`` and the browser reconnects (``retry``)."""
    scene_id = service.find_scene(key).id
    feeds, life = service.feeds(), ext.settings().SCREEN_STREAM_SECONDS
    seen = request.headers.get("Last-Event-ID") or None  # unchanged since the browser's last event: not resent

    def stream():
        yield f"retry: {RETRY_MS}\n\n"
        last, ends = seen, time.monotonic() + life
        while (left := ends - time.monotonic()) > 0 and not feeds.closed:
            try:
                snapshot = feeds.wait(scene_id, last, min(KEEPALIVE_SECONDS, left))
            except NotFound:
                return  # the scene is gone: the browser's reconnect gets the 404
            except (SQLAlchemyError, DomainError) as exc:  # the database is away: keep the viewer, try again
                log.warning("screen read failed", extra={"fields": {"scene_id": scene_id, "error": type(exc).__name__}})
                time.sleep(min(feeds.refresh_seconds, max(left, 0)))
                continue
            if snapshot is None:
                yield ": keep-alive\n\n"
                continue
            last = snapshot.etag
            yield f"id: {snapshot.etag}\nevent: snapshot\ndata: {snapshot.text}\n\n"

    response = Response(stream(), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


@bp.route("/screen/<string:key>/snapshot.json")
def snapshot(key: str):
    """The same snapshot for polling: ``ETag`` and ``If-None-Match`` → 304; fresh for a second."""
    current = service.feeds().current(service.find_scene(key).id)
    response = Response(current.text, mimetype="application/json")
    response.set_etag(current.etag)
    response.headers["Cache-Control"] = "public, max-age=1"
    return response.make_conditional(request)


@bp.route("/screen/<string:key>/code.png")
def code(key: str):
    """The code to scan: the scene's mini-program code if an organizer fetched it, else a QR of its link."""
    scene = service.find_scene(key)
    default = next((channel for channel in scene.channels if channel.slug == ""), None)
    content = default.wxacode_png if default is not None and default.wxacode_png else qr_png(h5_link(scene))
    response = Response(content, mimetype="image/png" if content.startswith(b"\x89PNG") else "image/jpeg")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
