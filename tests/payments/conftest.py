"""Payment fixtures: a live service (WeChat Pay's notifications need a real URL), credits, guests."""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
import requests
from sqlalchemy import delete
from werkzeug.serving import make_server

from bench import harness
from bench.harness import free_port
from tests.conftest import dispose_app, make_config


@dataclass
class LiveService:
    url: str
    app: object

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url + path, timeout=10, **kwargs)


@contextlib.contextmanager
def serve(database_url: str, sandbox, *, keep_data: bool = False, **overrides) -> Iterator[LiveService]:
    """The service on a real port (threaded), its notify URL pointing at itself; ``overrides`` are settings.
    With ``keep_data`` the sandbox is not reset and the tables are left as they are at the end (one
    test's phases, e.g. a key rotation, each with a service of their own); only the cached access
    tokens are dropped, since the next phase's sandbox issues its own."""
    from app import create_app

    if not keep_data:
        sandbox.reset()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    application = create_app(make_config(database_url, sandbox.url, PUBLIC_BASE_URL=url, **overrides))
    server = make_server("127.0.0.1", port, application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveService(url, application)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        if keep_data:
            from carbon.core.db import db
            from tests.conftest import forget_tokens
            from wechat.models import WeChatCredential

            with application.app_context():
                db.session.execute(delete(WeChatCredential))
                db.session.commit()
                forget_tokens(db.engine)
                db.session.remove()
                db.engine.dispose()
        else:
            dispose_app(application)


@pytest.fixture
def live(database_url, sandbox) -> Iterator[LiveService]:
    """The service on a real port (threaded), its notify URL pointing at itself."""
    with serve(database_url, sandbox) as service:
        yield service


def seed_project(app, *, units: int = 10_000, price: str = "60.00", first: int = 1, name: str = "测试项目") -> str:
    """A project with one 2021 block of ``units`` 1-kg serials; returns its public id."""
    from carbon.core.db import db
    from carbon.credits import service as credits
    from carbon.credits.models import Project

    with app.app_context():
        project = Project(registry_name="CDCER", name_zh=name, name_en="Test project", methodology="test",
                          location="成都", price_per_tonne=Decimal(price), unit_kg=Decimal(1))
        db.session.add(project)
        db.session.commit()
        credits.add_block(project.public_id, "2021", first, first + units - 1, Decimal(price))
        return project.public_id


def guest_token(service_url_or_client, sandbox, openid: str) -> str:
    if isinstance(service_url_or_client, str):
        return harness.guest_token(service_url_or_client, sandbox.url, openid)
    code = requests.post(f"{sandbox.url}/__sandbox__/login-code", json={"openid": openid}, timeout=5).json()["code"]
    return service_url_or_client.post("/api/v1/auth/login", json={"code": code}).get_json()["token"]


def live_scene(project_id: str, code: str, email: str):
    """A live conference scene offering the project, with a ``door`` channel; returns (owner, scene id).
    Call inside an app context."""
    from carbon.organizers import service as organizers
    from carbon.organizers.service import Principal
    from carbon.scenes import service as scenes

    owner = organizers.create_organization("组委会", owner_email=email, owner_password="long password",
                                           owner_name="o")
    principal = Principal(owner.organization, "owner", organizer=owner)
    scene = scenes.create_scene(principal, {"kind": "conference", "name_zh": "论坛", "code": code,
                                            "project_ids": [project_id]})
    scenes.add_channel(principal, scene.public_id, "door", "入口")
    scenes.update_scene(principal, scene.public_id, {"status": "live"})
    return owner, scene.public_id
