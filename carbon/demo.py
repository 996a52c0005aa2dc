"""The demo that ``make run`` seeds: idempotent, so a second run changes nothing."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

from sqlalchemy import select

from carbon.core.db import db
from carbon.credits import service as credits
from carbon.credits.models import Project
from carbon.organizers import service as organizers
from carbon.organizers.models import Organizer
from carbon.organizers.service import Principal
from carbon.scenes import codes
from carbon.scenes import service as scenes
from carbon.scenes.models import Scene

DEMO_EMAIL = "demo@diandian.local"
DEMO_PASSWORD = "diandian-demo-2021"
# The demo projects' owner: its console shows what the projects are owed (settlement) and their inventory.
OWNER_EMAIL = "projects@diandian.local"
FORUM_CODE = "cdcnf21"
FORUM_PLACE = {"latitude": Decimal("30.557300"), "longitude": Decimal("104.067200")}  # Century City, Chengdu (approx.)
# More live Chengdu scenes for GET /api/v1/scenes (coordinates approximate; the names say demo)
PLACES = [
    {"code": "cdpanda", "kind": "scenic_spot", "name_zh": "成都大熊猫繁育研究基地（示范）",
     "name_en": "Chengdu Research Base of Giant Panda Breeding (demo)", "latitude": Decimal("30.733000"),
     "longitude": Decimal("104.146000")},
    {"code": "cdkzxz", "kind": "scenic_spot", "name_zh": "宽窄巷子（示范）", "name_en": "Kuanzhai Alley (demo)",
     "latitude": Decimal("30.669700"), "longitude": Decimal("104.055300")},
    {"code": "cdcafe1", "kind": "restaurant", "name_zh": "春熙路蜀味小馆（示范）",
     "name_en": "Chunxi Road Sichuan Kitchen (demo)", "latitude": Decimal("30.657000"),
     "longitude": Decimal("104.081000")},
    {"code": "cdhotel", "kind": "hotel", "name_zh": "天府绿色酒店（示范）", "name_en": "Tianfu Green Hotel (demo)",
     "latitude": Decimal("30.572000"), "longitude": Decimal("104.066000")},
]
BLOCK_UNITS = 1_000_000  # 1,000 t of 1 kg units per demo project
PROJECTS = [
    {"registry_name": "CDCER", "name_zh": "龙泉山城市森林碳汇（示范）",
     "name_en": "Longquan Mountain urban forest carbon sink (demo)", "methodology": "碳惠天府 林业碳汇",
     "location": "四川成都", "price_per_tonne": Decimal("50.00")},
    {"registry_name": "CDCER", "name_zh": "成都公交新能源替代（示范）",
     "name_en": "Chengdu electric bus replacement (demo)", "methodology": "碳惠天府 公共交通",
     "location": "四川成都", "price_per_tonne": Decimal("45.00")},
    {"registry_name": "CCER", "name_zh": "川西户用沼气（示范）", "name_en": "West Sichuan household biogas (demo)",
     "methodology": "CCER 户用沼气", "location": "四川阿坝", "price_per_tonne": Decimal("70.00")},
]


def seed() -> Iterator[str]:
    member = db.session.scalar(select(Organizer).where(Organizer.email == DEMO_EMAIL))
    if member is None:
        member = organizers.create_organization(
            "成都数字碳中和高峰论坛组委会 / Forum organizing committee", owner_email=DEMO_EMAIL,
            owner_password=DEMO_PASSWORD, owner_name="论坛组委会")
        yield f"demo: organizer {DEMO_EMAIL} created"
    owner = db.session.scalar(select(Organizer).where(Organizer.email == OWNER_EMAIL))
    if owner is None:
        owner = organizers.create_organization(
            "成都碳惠天府示范项目业主 / Demo project owner", owner_email=OWNER_EMAIL,
            owner_password=DEMO_PASSWORD, owner_name="项目业主")
        yield f"demo: project owner {OWNER_EMAIL} created"
    projects = []
    for position, spec in enumerate(PROJECTS):
        project = db.session.scalar(select(Project).where(Project.name_en == spec["name_en"]))
        if project is None:
            project = Project(**spec, description=spec["name_zh"], unit_kg=Decimal(1),
                              owner_organization_id=owner.organization_id)
            db.session.add(project)
            db.session.commit()
            first = position * BLOCK_UNITS + 1  # serials are global positions: blocks never overlap
            credits.add_block(project.public_id, "2021", first, first + BLOCK_UNITS - 1, spec["price_per_tonne"])
            yield f"demo: project {spec['name_en']} created with {BLOCK_UNITS:,} units (vintage 2021)"
        if project.owner_organization_id is None:  # seeded before the demo projects had an owner
            project.owner_organization_id = owner.organization_id
            db.session.commit()
            yield f"demo: project {spec['name_en']} owned by {OWNER_EMAIL}"
        projects.append(project)
    if db.session.scalar(select(Scene).where(Scene.code == FORUM_CODE)) is None:
        principal = Principal(member.organization, "owner", organizer=member)
        scene = scenes.create_scene(principal, {
            "code": FORUM_CODE, "slug": "cdcnf-2021", "kind": "conference",
            "name_zh": "首届中国数字碳中和高峰论坛", "name_en": "First China Digital Carbon Neutrality Forum",
            "description": "2021年9月7日，成都 / Chengdu, 7 September 2021", "city": "成都", "province": "SC",
            "starts_on": date(2021, 9, 7), "ends_on": date(2021, 9, 7), "expected_attendance": 500,
            "venue_kwh": Decimal(12000), "project_ids": [p.public_id for p in projects]})
        for slug, label in (("door", "入口 / Entrance"), ("badge", "胸牌 / Badge")):
            scenes.add_channel(principal, scene.public_id, slug, label)
        scenes.update_scene(principal, scene.public_id, {"status": "live", **FORUM_PLACE})
        yield f"demo: scene {scene.name_zh} created (live)"
    principal = Principal(member.organization, "owner", organizer=member)
    forum = db.session.scalar(select(Scene).where(Scene.code == FORUM_CODE))
    if forum.latitude is None:  # seeded before scenes had a place
        scenes.update_scene(principal, forum.public_id, FORUM_PLACE)
        yield f"demo: scene {forum.name_zh} placed on the map"
    for place in PLACES:
        if db.session.scalar(select(Scene).where(Scene.code == place["code"])) is None:
            scene = scenes.create_scene(principal, {**place, "slug": place["code"], "city": "成都", "province": "SC",
                                                    "project_ids": [p.public_id for p in projects]})
            scenes.update_scene(principal, scene.public_id, {"status": "live"})
            yield f"demo: scene {scene.name_zh} created (live)"
    yield f"demo: organizer login {DEMO_EMAIL} / {DEMO_PASSWORD} (POST /api/v1/admin/auth/login)"
    yield f"demo: project owner login {OWNER_EMAIL} / {DEMO_PASSWORD} (console: settlement, inventory)"
    yield f"demo: scene code {codes.scene_string(FORUM_CODE)} → GET /api/v1/scenes/resolve?scene=s%3D{FORUM_CODE}"
    yield "demo: find scenes without a code → GET /api/v1/scenes?q=chengdu&lat=30.66&lng=104.06"
