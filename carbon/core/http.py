"""Request ids, one JSON log line per request, the one error envelope, the headers every answer
carries, and what every request must be before a view sees it: path ids and JSON bodies within the
limits docs/API.md lists (size, media type, nesting, number length, storable text).

Every failure of every route answers in the envelope: DomainErrors, HTTP errors, an unreachable
database or Redis (503; a different code once this request has sent a COMMIT), unexpected
exceptions (500), and errors in after_request and teardown functions (``CrashGuard``). Removing
the request's database session never fails a request (``end_session``).
"""
from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, current_app, g, has_app_context, has_request_context, jsonify, request
from flask.sessions import SessionInterface
from redis.exceptions import RedisError
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, OperationalError
from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge

from carbon.core.db import db
from carbon.core.errors import DomainError, ValidationError
from carbon.core.ids import new_request_id
from carbon.core.text import unstorable, unstorable_message

log = logging.getLogger("diandian.request")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# HTML pages (the H5 scene page, /api/docs) load nothing from elsewhere and run no script.
HTML_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
}
# The API authenticates with bearer tokens only (no cookies), so any origin may call it: a page
# elsewhere still needs a token the guest or organizer gave it.
CORS_ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Request-ID"
CORS_EXPOSE_HEADERS = "X-Request-ID, Retry-After, WWW-Authenticate"
CORS_MAX_AGE_SECONDS = 600
MAX_JSON_DEPTH = 20
MAX_INT_DIGITS = sys.get_int_max_str_digits() or 4300  # Python refuses longer integers (ValueError)
# In JSON a character ``carbon.core.text`` refuses can only come escaped (\b, \f, \u0000-\u001f,
# \u007f-\u009f, a surrogate \ud800-\udfff), as raw DEL or C1 (UTF-8 C2 80-9F) or as a raw surrogate
# (ED A0-BF, which Python's JSON parser decodes); raw C0 controls are malformed JSON. Other escapes
# (\u6210 for 成, as json.dumps writes Chinese) cannot hold one.
_MAYBE_UNSTORABLE = re.compile(rb"\\[bf]|\\u00[0-189][0-9A-Fa-f]|\\u007[Ff]|\\u[Dd][89A-Fa-f]|\x7f|\xc2[\x80-\x9f]"
                               rb"|\xed[\xa0-\xbf]")

HTTP_CODES = {
    400: ("request.bad_request", "请求格式有误 / Malformed request"),
    401: ("auth.unauthenticated", "请先登录 / Login required"),
    403: ("auth.forbidden", "无权访问 / Not allowed"),
    404: ("request.not_found", "接口或资源不存在 / No such route or resource"),
    405: ("request.method_not_allowed", "不支持该请求方法 / Method not allowed"),
    409: ("request.conflict", "请求冲突 / Conflict"),
    412: ("request.precondition_failed", "前提条件不成立 / A precondition (If-Match, If-Unmodified-Since) failed"),
    413: ("request.too_large", "请求体过大 / Request body too large"),
    415: ("request.unsupported_media_type", "不支持的内容类型 / Unsupported media type"),
    422: ("validation_error", "输入有误 / Invalid input"),
    429: ("rate_limited", "请求过于频繁 / Too many requests"),
    500: ("internal", "服务器内部错误 / Internal server error"),
}
PARTIALLY_SAVED = ("request.partially_saved",
                   ("服务暂不可用，本次请求可能已部分保存，请重试（使用相同的 Idempotency-Key） / A service became "
                    "unavailable after part of this request may have been saved; retry it, with the same "
                    "Idempotency-Key where the route takes one"))
REQUEST_ID_ENVIRON = "diandian.request_id"
UNAVAILABLE_RETRY_SECONDS = 2  # a restart or failover of the database or Redis is usually over by then


# PostgreSQL names the offending value of a unique or foreign key ("Key (openid)=(o_…) already exists").
_KEY_VALUE = re.compile(r"(Key \([^)]*\)=\().*?(\)(?: already exists| is not present| conflicts))")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname,
                                   "logger": record.name, "msg": record.getMessage()}
        payload.update(getattr(record, "fields", {}))
        if record.exc_info:
            payload["exc"] = _KEY_VALUE.sub(r"\1…\2", self.formatException(record.exc_info))
        return json.dumps(payload, ensure_ascii=False, default=str)


# Query parameters that carry credentials in WeChat's API: the AppSecret (jscode2session, cgi-bin/token),
# the access token (every cgi-bin and wxa call), the wx.login code.
_SECRET_QUERY = re.compile(r"([?&;](?:secret|access_token|js_code|refresh_token|session_key)=)[^&#\s\"']+",
                           re.IGNORECASE)
REDACTED_LOGGERS = ("urllib3.connectionpool",)  # logs every URL it requests at DEBUG


class RedactSecrets(logging.Filter):
    """Blank credential query parameters in a record's message, whatever handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SECRET_QUERY.sub(r"\1***", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def configure_logging(level: str) -> None:
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
    root = logging.getLogger("diandian")
    if not any(getattr(h, "_diandian", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._diandian = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(level)


def request_id() -> str:
    return getattr(g, "request_id", None) or "-"


def envelope(code: str, message: str, details: dict | None = None, request_id_: str = "-") -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}, "request_id": request_id_}}


ERROR_PAGES = "diandian.error_pages"  # app.extensions: [(whether a path is under it, its page)]


def answer_errors_with_page(app: Flask, under: Callable[[str], bool],
                            page: Callable[[int, str, str], Response]) -> None:
    """Requests whose path ``under`` accepts (the console's HTML pages) answer their errors with
    ``page(status, message, code)`` instead of the API's JSON envelope, also those no blueprint
    handler sees: a path that matches no route, a wrong method, a database that is away."""
    app.extensions.setdefault(ERROR_PAGES, []).append((under, page))


def error_response(status: int, code: str, message: str, details: dict | None = None) -> Response:
    page = next((page for under, page in current_app.extensions.get(ERROR_PAGES, ()) if under(request.path)),
                None) if has_request_context() else None
    if page is not None:
        response = page(status, message, code)
    else:
        response = jsonify(envelope(code, message, details, request_id()))
        response.status_code = status
    if status == 401:  # RFC 6750: the challenge, and which error when a token was given
        response.headers["WWW-Authenticate"] = 'Bearer realm="diandian"' + (
            ', error="invalid_token"' if code == "auth.invalid_token" else "")
    elif status == 429:
        response.headers["Retry-After"] = str(int((details or {}).get("retry_after_seconds", 60)))
    elif status == 503:
        response.headers["Retry-After"] = str(int((details or {}).get("retry_after_seconds",
                                                                      UNAVAILABLE_RETRY_SECONDS)))
    return response


def unavailable(dependency: str, exc: Exception, code: str, message: str) -> Response:
    """503 for a part that cannot be reached now. Once this request has sent a COMMIT, "nothing was
    written" would be untrue: then the answer says part of it may be saved (retry with the same key)."""
    sent = g.get("commit_sent", False)
    logging.getLogger("diandian.error").warning(f"{dependency} unavailable", extra={"fields": {
        "request_id": request_id(), "path": request.path, "commit_sent": sent,
        "error": type(getattr(exc, "orig", None) or exc).__name__}})
    if sent:
        code, message = PARTIALLY_SAVED
    return error_response(503, code, message, {"dependency": dependency})


def _note_commit(connection) -> None:
    """A COMMIT goes to the database for this request. Noted before it is sent, not after it
    succeeds: a connection that drops during the COMMIT leaves its outcome unknown."""
    if has_request_context():
        g.commit_sent = True


def end_session(*, remove: bool) -> None:
    """Roll back the request's session (``remove``: and close and forget it). When that fails (the
    connection dropped, or a rollback the server refuses), log it, invalidate the session's
    connections so none goes back to the pool, and carry on: never raises."""
    try:
        if remove:
            db.session.remove()
        else:
            db.session.rollback()
        return
    except Exception as exc:  # noqa: BLE001 - error handlers and teardowns must still answer
        logging.getLogger("diandian.error").warning("session cleanup failed", extra={"fields": {
            "request_id": request_id() if has_app_context() else "-", "error": type(exc).__name__}})
    if db.session.registry.has():
        with contextlib.suppress(Exception):
            db.session.registry().invalidate()
    if remove:
        db.session.registry.clear()


def _remove_session(_exc: BaseException | None) -> None:
    end_session(remove=True)


class CrashGuard:
    """WSGI middleware, the last line: an exception that escapes Flask (an after_request or teardown
    function failing, past Flask's error handlers) becomes the envelope's 500 with the request id,
    not the server's HTML page. The app's answer is passed on only once the app returned, so a
    failure after Flask built its response can still replace it."""

    def __init__(self, wsgi_app: Callable, *, propagate: Callable[[], bool]) -> None:
        self.wsgi_app = wsgi_app
        self.propagate = propagate

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        pending: list[tuple] = []  # the app's start_response arguments, held until the app returned
        sent: list[Callable] = []

        def deferred_start(status, headers, exc_info=None):
            pending[:] = [(status, headers, exc_info)]
            return write

        def send() -> None:
            if pending:
                status, headers, exc_info = pending.pop()
                rid = environ.get(REQUEST_ID_ENVIRON)
                if rid and not any(name.lower() == "x-request-id" for name, _ in headers):
                    headers = [*headers, ("X-Request-ID", rid)]  # a failing after_request skipped ours
                sent[:] = [start_response(status, headers, exc_info)]

        def write(data: bytes) -> None:  # PEP 3333's legacy write(): the answer goes out at once
            send()
            sent[0](data)

        try:
            app_iter = self.wsgi_app(environ, deferred_start)
        except Exception:
            if self.propagate():
                raise
            rid = environ.get(REQUEST_ID_ENVIRON) or new_request_id()
            logging.getLogger("diandian.error").exception("unhandled outside the error handlers", extra={
                "fields": {"request_id": rid, "path": environ.get("PATH_INFO")}})
            body = json.dumps(envelope(*HTTP_CODES[500], request_id_=rid), ensure_ascii=False).encode()
            start_response("500 INTERNAL SERVER ERROR", [
                ("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("X-Request-ID", rid)],
                sys.exc_info() if sent else None)
            return [body]
        send()
        return app_iter


def _validation_details(exc: HTTPException) -> dict:
    """flask-smorest/webargs put field messages under data.messages.<location>."""
    messages = (getattr(exc, "data", None) or {}).get("messages") or {}
    if set(messages) <= {"json", "query", "path", "form", "headers", "files", "view_args", "querystring"}:
        merged: dict = {}
        for location_messages in messages.values():
            if isinstance(location_messages, dict):
                merged.update(location_messages)
            else:
                merged.setdefault("_schema", []).extend(location_messages)
        return flatten_messages(merged)
    return flatten_messages(messages)


def flatten_messages(messages: dict, prefix: str = "") -> dict[str, list]:
    """Nested marshmallow messages as dotted field paths: ``{"activities.0.nights": [...]}``."""
    flat: dict[str, list] = {}
    for key, value in messages.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_messages(value, f"{path}."))
        else:
            flat[path] = value if isinstance(value, list) else [value]
    return flat


def provider_format(view):
    """Mark a view that answers in an outside party's format (WeChat Pay's notify): the API's JSON-only
    checks and envelope are not for it; its blueprint turns HTTP errors into that format itself."""
    view.provider_format = True
    return view


def requires_json(view, method: str, path: str) -> bool:
    """A body sent to this view, method and path must be JSON (``_check_body``; the OpenAPI
    description documents 415 and 413 from it)."""
    return (path.startswith("/api/") and method in BODY_METHODS
            and not getattr(view, "provider_format", False))


class JsonTooDeep(DomainError):
    code = "request.json_too_deep"
    message = f"JSON 嵌套超过 {MAX_JSON_DEPTH} 层 / The JSON body is nested more than {MAX_JSON_DEPTH} levels deep"


class NumberTooLong(DomainError):
    code = "request.number_too_long"
    message = f"数字超过 {MAX_INT_DIGITS} 位 / A number in the body has more than {MAX_INT_DIGITS} digits"


def _chunked() -> bool:
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _read_chunked_body() -> None:
    """A chunked body has no Content-Length for werkzeug to check: read it up to the limit (the
    server de-chunks it), and one byte more says whether it went over."""
    data = request.get_data(cache=True)
    limit = request.max_content_length
    if limit is not None and len(data) >= limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()


def _check_body() -> Response | None:
    """A body must be JSON (415) within the size limit (413), chunked or not, and pass ``_check_json_body``."""
    chunked = request.content_length is None and _chunked()
    if ((request.content_length or 0) > 0 or chunked) and not request.is_json:
        return error_response(415, "request.unsupported_media_type",
                              "请求体须为 JSON / The body must be JSON (Content-Type: application/json)")
    if chunked:
        _read_chunked_body()
    if request.is_json:
        _check_json_body()
    return None


def _check_json_body() -> None:
    """Before a view parses: refuse what Python's parser cannot take (nesting near the recursion
    limit, integers past ``MAX_INT_DIGITS``), nesting no route needs (past ``MAX_JSON_DEPTH``), and
    any string the service refuses to store (``carbon.core.text``), wherever it sits: the schemas'
    own field says so too, this holds for every route and every nested value. A body that can hold
    none of these (short, few brackets, no escapes, no DEL or C1 controls) is not parsed here."""
    data = request.get_data(cache=True)
    if (len(data) <= MAX_INT_DIGITS and data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH
            and not _MAYBE_UNSTORABLE.search(data)):
        return
    try:
        value = json.loads(data)
    except RecursionError:
        raise JsonTooDeep() from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return  # malformed: the view's parser answers 400 as for any bad JSON
    except ValueError:
        raise NumberTooLong() from None
    depth, refused = inspect_json(value)
    if depth > MAX_JSON_DEPTH:
        raise JsonTooDeep()
    if refused:
        path, character = refused
        raise ValidationError(details={path: [unstorable_message(character)]})


def inspect_json(value: Any) -> tuple[int, tuple[str, str] | None]:
    """How deeply lists and objects nest in ``value`` (a scalar is 0, ``[]`` is 1), and the first
    string the service refuses as ``(dotted path, "U+XXXX")`` (a refused key names its object, or
    ``_schema``); without recursion."""
    deepest, refused, pending = 0, None, [(value, 1, "")]
    while pending:
        item, level, path = pending.pop()
        if isinstance(item, str):
            character = refused is None and unstorable(item)
            if character:
                refused = (path or "_schema", character)
            continue
        if isinstance(item, dict):
            for key in item:
                character = refused is None and unstorable(key)
                if character:
                    refused = (path or "_schema", character)
            children = ((child, f"{path}.{key}" if path else key) for key, child in item.items())
        elif isinstance(item, list):
            children = ((child, f"{path}.{index}" if path else str(index)) for index, child in enumerate(item))
        else:
            continue
        deepest = max(deepest, level)
        pending.extend((child, level + 1, where) for child, where in children)
    return deepest, refused


def _preflight() -> Response:
    """A CORS preflight for a route that exists: which methods and headers a page elsewhere may use."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    methods = request.url_rule.map.bind_to_environ(request.environ).allowed_methods()  # every rule of the path
    response.headers["Access-Control-Allow-Methods"] = ", ".join(sorted(methods))
    response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
    response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_SECONDS)
    return response


def _answer_headers(response: Response) -> None:
    """What every answer says about itself: never sniffed; API answers never stored (they are a
    guest's, an organizer's or carry a token) and readable from any origin; HTML pages framed by none."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path.startswith("/api/v1/"):
        headers.setdefault("Cache-Control", "no-store")
        if request.environ.get("HTTP_ORIGIN"):
            headers["Access-Control-Allow-Origin"] = "*"
            headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
    if response.mimetype == "text/html":
        for name, value in HTML_HEADERS.items():
            headers.setdefault(name, value)


class NoCookieSessions(SessionInterface):
    """The API authenticates with bearer tokens and never uses Flask's cookie session: do not parse,
    verify or sign one on every request."""

    def open_session(self, app, request):
        return None  # Flask then uses a null session, which refuses writes

    def save_session(self, app, session, response) -> None:
        return None


def _sync_once(app: Flask) -> Callable[[Callable], Callable]:
    """``app.ensure_sync``, answered once per function: Flask asks it of every hook and view on
    every request, and each answer costs an ``inspect.iscoroutinefunction``."""
    ensure_sync = app.ensure_sync
    known: dict[Callable, Callable] = {}

    def once(func: Callable) -> Callable:
        try:
            return known[func]
        except KeyError:
            if len(known) >= 4096:  # hooks and views are a fixed set; this only bounds a surprise
                known.clear()
            synced = known[func] = ensure_sync(func)
            return synced
        except TypeError:  # unhashable
            return ensure_sync(func)
    return once


def install(app: Flask, *, log_requests: bool) -> None:
    app.session_interface = NoCookieSessions()
    app.ensure_sync = _sync_once(app)  # type: ignore[method-assign]
    # Flask-SQLAlchemy's own teardown lets a failing rollback escape Flask: ours logs and swallows it.
    app.teardown_appcontext_funcs[:] = [f for f in app.teardown_appcontext_funcs
                                        if getattr(f, "__func__", None) is not type(db)._teardown_session]
    app.teardown_appcontext(_remove_session)
    if not event.contains(Engine, "commit", _note_commit):
        event.listen(Engine, "commit", _note_commit)
    app.wsgi_app = CrashGuard(app.wsgi_app, propagate=lambda: _propagates(app))  # type: ignore[method-assign]

    @app.before_request
    def _start() -> Response | None:
        req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup, not twelve
        environ = req.environ
        incoming = environ.get("HTTP_X_REQUEST_ID", "")  # environ, not headers: a missing header raises inside
        g.request_id = environ[REQUEST_ID_ENVIRON] = incoming if _REQUEST_ID.match(incoming) else new_request_id()
        g.started = time.perf_counter()
        view = app.view_functions.get(req.endpoint)
        if getattr(view, "provider_format", False):
            return None
        method = req.method
        if (method == "OPTIONS" and req.url_rule is not None and req.path.startswith("/api/v1/")
                and environ.get("HTTP_ORIGIN") and environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD")):
            return _preflight()
        if req.view_args and any(isinstance(value, str) and unstorable(value) for value in req.view_args.values()):
            raise NotFound()  # a path id with NUL or control characters names nothing
        if method in BODY_METHODS and requires_json(view, method, req.path):
            return _check_body()
        if method == "DELETE" and req.is_json and "arguments" in getattr(view, "_apidoc", {}):
            _check_json_body()  # a DELETE that reads a JSON body (DELETE /me's confirmation), never 415
        return None

    @app.after_request
    def _finish(response: Response) -> Response:
        if response.status_code == 412:  # werkzeug's conditional answer (If-Match) keeps the resource's body
            response = error_response(412, *HTTP_CODES[412])
        response.headers["X-Request-ID"] = request_id()
        _answer_headers(response)
        if log_requests:
            duration_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
            log.info("request", extra={"fields": {
                "request_id": request_id(), "method": request.method, "path": request.path,
                "route": request.url_rule.rule if request.url_rule else None,
                "status": response.status_code, "duration_ms": round(duration_ms, 2)}})
        return response

    @app.errorhandler(DomainError)
    def _domain_error(exc: DomainError) -> Response:
        return error_response(exc.http_status, exc.code, exc.message, exc.details)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code, message = HTTP_CODES.get(status, (f"request.http_{status}", exc.description or exc.name))
        details = _validation_details(exc) if status in (400, 422) else {}
        if status == 400 and not details and exc.description and "JSON" in exc.description:
            message = "请求体不是有效的 JSON / The body is not valid JSON"
        response = error_response(status, code, message, details)
        if status == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(OperationalError)
    def _database_unavailable(exc: OperationalError) -> Response:
        """The database is unreachable (restart, failover) or a lock wait timed out: retry later."""
        end_session(remove=False)
        return unavailable("database", exc, "database.unavailable",
                           "数据库暂不可用，请稍后重试（未写入任何数据） / The database is unavailable, retry shortly "
                           "(nothing was written)")

    @app.errorhandler(DataError)
    def _unstorable_input(exc: DataError) -> Response:
        """The database refused a value (a number out of range, text too long for its column on
        PostgreSQL; text it cannot store is refused earlier, ``_check_json_body``): the input was
        invalid, even where a schema did not say so."""
        end_session(remove=False)
        logging.getLogger("diandian.error").warning("database refused a value", extra={"fields": {
            "request_id": request_id(), "path": request.path, "error": str(exc.orig)[:200]}})
        return error_response(422, "validation_error", "输入含有无法保存的值（如超出范围的数字） / The input has a value the "
                                                       "database cannot store (e.g. a number out of range)")

    @app.errorhandler(RedisError)
    def _redis_unavailable(exc: RedisError) -> Response:
        """A Redis user without a fallback (rate limits and the access token have one)."""
        return unavailable("redis", exc, "redis.unavailable",
                           "缓存服务暂不可用，请稍后重试 / Redis is unavailable, retry shortly")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if _propagates(app):
            raise exc
        logging.getLogger("diandian.error").exception(
            "unhandled", extra={"fields": {"request_id": request_id(), "path": request.path}})
        return error_response(500, *HTTP_CODES[500])


def _propagates(app: Flask) -> bool:
    """Tests let unexpected exceptions propagate (bugs fail loudly) unless they say otherwise."""
    return app.testing and app.config.get("PROPAGATE_UNEXPECTED", True)
