"""`make run`'s demo: seeding twice changes nothing, and the demo projects have an owner whose
console shows them (inventory and settlement), while the forum's organizers see their scene."""
from __future__ import annotations

from sqlalchemy import func, select

from carbon import demo
from carbon.core.db import db
from carbon.credits.models import Project
from carbon.organizers.models import Organizer
from carbon.scenes.models import Scene
from tests.console.conftest import sign_in


def test_the_demo_seeds_once_and_its_projects_have_an_owner_with_a_settlement(app):
    with app.app_context():
        first = list(demo.seed())
        again = [line for line in demo.seed() if "created" in line or "owned by" in line]
        assert any(demo.OWNER_EMAIL in line for line in first)
        assert again == []  # idempotent
        owner = db.session.scalar(select(Organizer).where(Organizer.email == demo.OWNER_EMAIL))
        projects = db.session.scalars(select(Project).order_by(Project.id)).all()
        assert len(projects) == len(demo.PROJECTS)
        assert {p.owner_organization_id for p in projects} == {owner.organization_id}
        assert db.session.scalar(select(func.count()).select_from(Scene)) == 1 + len(demo.PLACES)
        ids = [p.public_id for p in projects]

    client = app.test_client()
    assert sign_in(client, demo.OWNER_EMAIL, demo.DEMO_PASSWORD).status_code == 302
    settlement = client.get("/console/settlement").get_data(as_text=True)
    inventory = client.get("/console/projects").get_data(as_text=True)
    assert all(pid in settlement for pid in ids) and all(pid in inventory for pid in ids)

    organizers = app.test_client()
    assert sign_in(organizers, demo.DEMO_EMAIL, demo.DEMO_PASSWORD).status_code == 302
    assert demo.FORUM_CODE in organizers.get("/console/scenes").get_data(as_text=True)
    assert not any(pid in organizers.get("/console/settlement").get_data(as_text=True) for pid in ids)
