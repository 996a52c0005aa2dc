"""The OpenAPI description says what the service really answers, so a generated client works and
a conformance checker (tests/api/test_schemathesis.py) can fail.

Every error is the one envelope (component ``ErrorEnvelope``); there is no catch-all ``default``
response. Which statuses an operation documents is decided in one place, ``StatusesPlugin``, from:

- every operation: 500 ``internal``, 503 (database or Redis unavailable);
- the route's audience (who may call it, ``audience_of``): not public → 401 and its security scheme;
- the route: a path parameter → 404 (an unknown or someone else's id); POST/PUT/PATCH → 415
  (``http.requires_json``); a JSON body → 400 (malformed JSON), 413 and 422;
- what the route declares with ``@answers(...)``: the statuses its service can raise besides
  (409, 410, 429, 502 …), and ``@blp.alt_response`` for answers that are not the envelope.
"""
from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from apispec import BasePlugin
from flask import Flask, Response, current_app
from flask_smorest import Api
from flask_smorest import Blueprint as SmorestBlueprint
from marshmallow import Schema, fields, missing
from marshmallow.decorators import POST_DUMP, PRE_DUMP

ALWAYS = (500, 503)
WITH_JSON_BODY = (400, 413, 422)
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again",
                               "schema": {"type": "integer", "minimum": 1}}}
ANSWERS_ATTR = "_diandian_answers"


def answers(*statuses: int) -> Callable:
    """Document statuses this view answers besides the derived ones (put it below ``@blp.route``)."""
    def mark(view: Callable) -> Callable:
        setattr(view, ANSWERS_ATTR, tuple(sorted({*getattr(view, ANSWERS_ATTR, ()), *statuses})))
        return view
    return mark


class Blueprint(SmorestBlueprint):
    """flask-smorest's Blueprint, with each ``arguments`` schema made once: given a class, webargs
    would build an instance (fields deep-copied) on every request. A marshmallow 4 schema keeps no
    state between loads, so one instance serves every request and thread. Each ``response``
    schema dumps through ``fast_dump`` (the same schema, less work per field)."""

    def arguments(self, schema, **kwargs):
        if isinstance(schema, type) and issubclass(schema, Schema):
            schema = schema()
        return super().arguments(schema, **kwargs)

    def response(self, status_code, schema=None, **kwargs):
        if isinstance(schema, type) and issubclass(schema, Schema):
            schema = schema()
        if isinstance(schema, Schema):
            schema.dump = fast_dump(schema)  # type: ignore[method-assign]  # the description reads the class
        return super().response(status_code, schema, **kwargs)


def fast_dump(schema: Schema) -> Callable[..., Any]:
    """``schema.dump`` with marshmallow's per-field layers taken out: for each dumped field, the
    value is read as ``marshmallow.utils.get_value`` reads it (``obj[key]``, else the attribute),
    ``dump_default`` stands in for a missing one, and the field's own ``_serialize`` formats it;
    nested schemas (``Nested``, ``List(Nested)``) are dumped the same way. The schema stays the one
    definition (fields, formats, the OpenAPI description): this only calls less around it. A
    schema this does not cover (dump hooks, a custom accessor, dotted attributes, ``only`` or
    ``exclude`` on a nested field) keeps marshmallow's own ``dump``."""
    dump_one = _dump_one(schema)
    if dump_one is None:
        return schema.dump
    many_default = schema.many

    def dump(obj: Any, *, many: bool | None = None) -> Any:
        if (many_default if many is None else many):
            return None if obj is None else [dump_one(item) for item in obj]
        return dump_one(obj)
    return dump


def _dump_one(schema: Schema) -> Callable[[Any], dict] | None:
    if (schema._hooks[PRE_DUMP] or schema._hooks[POST_DUMP]
            or type(schema).get_attribute is not Schema.get_attribute or type(schema)._serialize is not Schema._serialize
            or schema.dict_class is not dict):
        return None
    plan = []
    for name, field in schema.dump_fields.items():
        check_key = name if field.attribute is None else field.attribute
        if ("." in check_key or type(field).serialize is not fields.Field.serialize
                or type(field).get_value is not fields.Field.get_value):
            return None
        serialize = _serializer(field)
        if serialize is None:
            return None
        plan.append((field.data_key if field.data_key is not None else name, name, check_key,
                     field._CHECK_ATTRIBUTE, field, serialize))
    plan_ = tuple(plan)

    def dump_one(obj: Any) -> dict:
        out = {}
        keyed = hasattr(obj, "__getitem__")
        for key, name, check_key, check_attribute, field, serialize in plan_:
            if check_attribute:
                if keyed:
                    try:
                        value = obj[check_key]
                    except (KeyError, IndexError, TypeError, AttributeError):
                        value = getattr(obj, check_key, missing)
                else:
                    value = getattr(obj, check_key, missing)
                if value is missing:
                    default = field.dump_default
                    value = default() if callable(default) else default
                    if value is missing:
                        continue
            else:
                value = None
            value = serialize(value, name, obj)
            if value is not missing:
                out[key] = value
        return out
    return dump_one


def _serializer(field: fields.Field) -> Callable[[Any, str, Any], Any] | None:
    """What formats ``field``'s value: its own ``_serialize``, or for a nested schema (alone or in
    a list) that schema's ``_dump_one``; None when the nested schema is not covered."""
    if type(field) is fields.Nested:
        nested = field.schema
        if field.only is not None or field.exclude or nested.many:
            return None
        dump_one = _dump_one(nested)
        if dump_one is None:
            return None
        if field.many:
            return lambda value, _attr, _obj: None if value is None else [dump_one(item) for item in value]
        return lambda value, _attr, _obj: None if value is None else dump_one(value)
    if type(field) is fields.List and type(field.inner) is fields.Nested:
        inner = _serializer(field.inner)
        if inner is None:
            return None
        return lambda value, attr, obj: None if value is None else [inner(item, attr, obj) for item in value]
    return field._serialize


class DumpOnce:
    """The JSON answer for a value a service hands out unchanged to many requests (a cached view):
    dumped through ``schema`` and encoded once per value object, then served as those bytes. The
    value must not change once handed out; a different object (the cache refilled) is dumped anew.
    The view keeps its ``@blp.response(..., schema)`` for the description."""

    MAX_KEPT = 256

    def __init__(self, schema: type[Schema]) -> None:
        self.schema = schema()
        self.dump = fast_dump(self.schema)
        self._kept: dict[int, tuple[Any, bytes]] = {}

    def __call__(self, value: Any) -> Response:
        kept = self._kept.get(id(value))
        if kept is None or kept[0] is not value:
            if len(self._kept) >= self.MAX_KEPT:
                self._kept.clear()
            kept = self._kept[id(value)] = (value, f"{current_app.json.dumps(self.dump(value))}\n".encode())
        return current_app.response_class(kept[1], mimetype=current_app.json.mimetype)


class StatusesPlugin(BasePlugin):
    """apispec plugin: completes each operation's responses and security from its Flask view."""

    def __init__(self, app: Flask, *, audience_of: Callable[[Callable | None, str], str],
                 requires_json: Callable[[Callable | None, str, str], bool]) -> None:
        self.app = app
        self.audience_of = audience_of
        self.requires_json = requires_json

    def init_spec(self, spec) -> None:
        self.spec = spec

    def operation_helper(self, path: str | None = None, operations: dict | None = None, **kwargs: Any) -> None:
        rule = kwargs.get("rule")
        if rule is None or not operations:
            return
        view = self.app.view_functions.get(rule.endpoint)
        audience = self.audience_of(view, rule.rule)
        for method, operation in operations.items():
            statuses = {*ALWAYS, *getattr(view, ANSWERS_ATTR, ())}
            if audience != "public":
                statuses.add(401)
                self._security_scheme(audience)
            if rule.arguments:
                statuses.add(404)
            if self.requires_json(view, method.upper(), rule.rule):
                # any body sent is checked (``http._check_body``), whether or not the view reads one
                statuses.update({415, *WITH_JSON_BODY})
            elif "requestBody" in operation:
                statuses.update(WITH_JSON_BODY)
            operation["security"] = [] if audience == "public" else [{audience: []}]
            responses = operation.setdefault("responses", {})
            declared = {str(code) for code in responses}  # the view's own (alt_)responses win
            for status in sorted(statuses):
                if str(status) not in declared:
                    responses[str(status)] = HTTPStatus(status).name

    def _security_scheme(self, audience: str) -> None:
        if audience not in self.spec.components.security_schemes:
            self.spec.components.security_scheme(audience, {"type": "http", "scheme": "bearer"})


def decimal_strings(self, field: fields.Field, **kwargs: Any) -> dict:
    """apispec attribute function: ``fields.Decimal(as_string=True)`` is a string on the wire."""
    if isinstance(field, fields.Decimal) and field.as_string:
        return {"type": "string", "format": "decimal"}
    return {}


class DiandianApi(Api):
    """flask-smorest's Api with the project's error envelope, no vague ``default`` response and the
    statuses of every operation (``StatusesPlugin``)."""

    DEFAULT_ERROR_RESPONSE_NAME = None

    def __init__(self, app: Flask, *, error_schema: type, audience_of: Callable[[Callable | None, str], str],
                 requires_json: Callable[[Callable | None, str, str], bool]) -> None:
        self.ERROR_SCHEMA = error_schema
        plugin = StatusesPlugin(app, audience_of=audience_of, requires_json=requires_json)
        super().__init__(app, spec_kwargs={"extra_plugins": [plugin]})
        self.ma_plugin.converter.add_attribute_function(decimal_strings)

    def _register_responses(self) -> None:
        """One lazily registered response per error status (``NOT_FOUND`` …), all with the envelope."""
        self.spec.components.schema("ErrorEnvelope", schema=self.ERROR_SCHEMA)
        for status in HTTPStatus:
            if status < 400:
                continue
            response: dict[str, Any] = {"description": status.phrase, "content": {
                self.DEFAULT_RESPONSE_CONTENT_TYPE: {"schema": "ErrorEnvelope"}}}
            if status in (HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE):
                response["headers"] = RETRY_AFTER
            self.spec.components.response(status.name, response, lazy=True)
