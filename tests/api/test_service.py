"""Health, readiness, OpenAPI, docs page and structured request logs."""
from __future__ import annotations

import json
import logging

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


def test_readyz_is_503_when_a_dependency_is_down(database_url, sandbox, tmp_path):
    app = create_app(make_config(database_url, sandbox.url, REDIS_URL="redis://127.0.0.1:1/0"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["redis"].startswith("error")
    bad_db = create_app(make_config(f"sqlite:///{tmp_path}/missing-dir/x/db.sqlite3", sandbox.url))
    assert bad_db.test_client().get("/readyz").status_code == 503


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
