"""Health, readiness, OpenAPI, docs page and structured request logs."""
from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import create_engine, text

from app import create_app
from tests.conftest import make_config


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_readyz_checks_database(client):
    body = client.get("/readyz").get_json()
    assert body == {"status": "ok", "checks": {"database": "ok"}}


def test_readyz_checks_redis_when_configured(database_url, sandbox, redis_url):
    app = create_app(make_config(database_url, sandbox.url, REDIS_URL=redis_url))
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert ("redis" in response.get_json()["checks"]) == bool(redis_url)


def test_openapi_describes_the_api(client):
    spec = client.get("/api/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/auth/login" in spec["paths"]
    login = spec["paths"]["/api/v1/auth/login"]["post"]
    assert "LoginIn" in json.dumps(login["requestBody"])
    assert "422" in login["responses"]
    assert {"LoginIn", "LoginOut", "UserOut"} <= set(spec["components"]["schemas"])


def test_docs_page_is_readable_offline(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "/api/v1/auth/login" in html and "<script" not in html


def test_one_json_log_line_per_request(database_url, sandbox, caplog):
    app = create_app(make_config(database_url, sandbox.url, LOG_REQUESTS=True))
    logger = logging.getLogger("diandian.request")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        app.test_client().get("/healthz", headers={"X-Request-ID": "log-check-1"})
    finally:
        logger.removeHandler(handler)
    assert len(records) == 1
    fields = records[0].fields
    assert fields["request_id"] == "log-check-1" and fields["route"] == "/healthz" and fields["status"] == 200
    assert isinstance(fields["duration_ms"], float)
    from carbon.core.http import JsonFormatter

    line = JsonFormatter().format(records[0])
    assert json.loads(line)["request_id"] == "log-check-1"


def test_a_dropped_database_connection_answers_503_once_then_the_pool_recovers(client, login, database_url):
    """No pre-ping: a pooled connection the server dropped (restart, failover) fails one request with
    the envelope's 503, never a 500; SQLAlchemy replaces the pool and the next request succeeds."""
    if not database_url.startswith("postgresql"):
        pytest.skip("server-side connection loss is a PostgreSQL behaviour")
    token, _ = login()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/me", headers=headers).status_code == 200  # a pooled connection exists
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        dropped = connection.scalar(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    admin.dispose()
    assert dropped >= 1
    failed = client.get("/api/v1/me", headers=headers)
    assert failed.status_code == 503
    assert failed.get_json()["error"]["code"] == "database.unavailable" and failed.get_json()["error"]["request_id"]
    assert client.get("/api/v1/me", headers=headers).status_code == 200
