"""Console helpers: organizations, and a browser-like test client that signs in through the form."""
from __future__ import annotations

import re

import pytest

from tests.payments.conftest import live  # noqa: F401 - the service on a real port, for payments

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(response) -> str:
    found = _CSRF.search(response.get_data(as_text=True))
    assert found, "the page has no form token"
    return found.group(1)


def organization(app, name: str, email: str):
    """A new organization with its owner; returns the owner's public id."""
    from carbon.organizers import service as organizers

    with app.app_context():
        return organizers.create_organization(name, owner_email=email, owner_password=PASSWORD,
                                              owner_name=name).public_id


def sign_in(client, email: str, password: str = PASSWORD):
    token = csrf_of(client.get("/console/login"))
    return client.post("/console/login", data={"email": email, "password": password, "csrf_token": token})


@pytest.fixture
def owner_a(app, client):
    """A signed-in owner of organization A (the test client holds the cookie); returns the email."""
    organization(app, "甲组委会", "a@forum.example")
    assert sign_in(client, "a@forum.example").status_code == 302
    return "a@forum.example"


SCENE_FORM = {"kind": "conference", "name_zh": "首届中国数字碳中和高峰论坛", "name_en": "Forum", "city": "成都",
              "province": "SC", "starts_on": "2021-09-07", "ends_on": "2021-09-07", "expected_attendance": "500"}
