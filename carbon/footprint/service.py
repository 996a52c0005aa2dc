"""Footprints: preview (not saved), save for the guest, read back, history, life comparison."""
from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select

from carbon.accounts.models import User
from carbon.core.db import db
from carbon.core.errors import NotFound
from carbon.core.units import grams_to_kg, kg
from carbon.footprint import dataset
from carbon.footprint.activities import Context
from carbon.footprint.calculator import calculate, to_json
from carbon.footprint.models import Footprint
from carbon.scenes import service as scenes
from carbon.scenes import stats as scene_stats

PREVIOUS_SHOWN = 5


class FootprintNotFound(NotFound):
    code = "footprint.not_found"
    message = "未找到该碳足迹 / Footprint not found"


def context_for(body: dict, scene: dict) -> Context:
    """Where the footprint happens: the request's province, else the scene's; the scene's venue."""
    return Context(province=body.get("province") or scene.get("province"),
                   venue_kwh=scene.get("venue_kwh"), venue_attendance=scene.get("venue_attendance"),
                   household_size=body.get("household_size", 1))


def scene_facts(body: dict) -> dict:
    """What the scanned scene contributes (404/410/422 for an unknown, closed or malformed code)."""
    return scenes.footprint_facts(body["scene"]) if body.get("scene") else {}


def preview(body: dict) -> dict:
    data = dataset.load()
    output = to_json(calculate(body["kind"], body["activities"], context_for(body, scene_facts(body)), data))
    comparison = _comparison(Decimal(output["total_kg"]), []) if body["kind"] == "life" else None
    return {**output, "id": None, "scene": body.get("scene"), "comparison": comparison, "created_at": None}


def create(user: User, body: dict) -> dict:
    data = dataset.load()
    scene = scene_facts(body)
    result = calculate(body["kind"], body["activities"], context_for(body, scene), data)
    footprint = Footprint(user_id=user.id, scene_id=scene.get("scene_id"), channel=scene.get("channel"),
                          scene_code=body.get("scene"), kind=body["kind"], dataset_version=data.version,
                          total_grams=result["total_grams"], request=json.loads(json.dumps(body, default=str)), result=to_json(result))
    db.session.add(footprint)
    if scene:
        scene_stats.add(scene["scene_id"], scene["channel"], footprints=1)
    db.session.commit()
    return present(footprint)


def create_host(principal, body: dict) -> Footprint:
    """The event's own footprint (kind ``host``), for one of the organization's scenes (another's is
    not found) or for a named event: the same calculator and dataset as the guests'."""
    data = dataset.load()
    scene = scenes.get_scene(principal, body["scene"]) if body.get("scene") else None
    ctx = Context(province=body.get("province") or (scene.province if scene else None))
    result = calculate("host", body["activities"], ctx, data)
    request = json.loads(json.dumps(body, default=str))
    request.setdefault("event_name", scene.name_zh if scene else None)
    footprint = Footprint(organization_id=principal.organization.id, scene_id=scene.id if scene else None,
                          kind="host", dataset_version=data.version, total_grams=result["total_grams"],
                          request=request, result=to_json(result))
    db.session.add(footprint)
    db.session.commit()
    return footprint


def host_footprint(principal, public_id: str) -> Footprint:
    """One of the organization's host footprints (another organization's is not found)."""
    footprint = db.session.scalar(select(Footprint).where(Footprint.public_id == public_id,
                                                          Footprint.kind == "host"))
    if footprint is None or footprint.organization_id != principal.organization.id:
        raise FootprintNotFound()
    return footprint


def host_footprints(principal, limit: int = 50) -> list[Footprint]:
    return list(db.session.scalars(select(Footprint).where(Footprint.organization_id == principal.organization.id,
                                                           Footprint.kind == "host")
                                   .order_by(Footprint.id.desc()).limit(limit)))


def get(user: User, public_id: str) -> dict:
    footprint = db.session.scalar(select(Footprint).where(Footprint.public_id == public_id))
    if footprint is None or footprint.user_id != user.id:
        raise FootprintNotFound()
    return present(footprint)


def history(user: User, kind: str | None = None, limit: int = 20) -> list[dict]:
    query = select(Footprint).where(Footprint.user_id == user.id)
    if kind:
        query = query.where(Footprint.kind == kind)
    rows = db.session.scalars(query.order_by(Footprint.created_at.desc(), Footprint.id.desc()).limit(limit))
    return [present(row, with_comparison=False) for row in rows]


def present(footprint: Footprint, *, with_comparison: bool = True) -> dict:
    comparison = None
    if footprint.kind == "life" and with_comparison:
        earlier = db.session.scalars(
            select(Footprint).where(Footprint.user_id == footprint.user_id, Footprint.kind == "life",
                                    Footprint.id < footprint.id)
            .order_by(Footprint.id.desc()).limit(PREVIOUS_SHOWN)).all()
        comparison = _comparison(grams_to_kg(footprint.total_grams), earlier)
    return {**footprint.result, "id": footprint.public_id, "scene": footprint.scene_code,
            "comparison": comparison, "created_at": footprint.created_at}


def _comparison(total_kg: Decimal, earlier: list[Footprint]) -> dict:
    """A life footprint next to China's per-capita CO2 and the guest's earlier life results."""
    average = dataset.load().factor("per_capita.cn.co2")
    previous = [{"id": row.public_id, "total_kg": str(grams_to_kg(row.total_grams)),
                 "change_kg": str(kg(total_kg - grams_to_kg(row.total_grams))),
                 "dataset_version": row.dataset_version, "created_at": row.created_at.isoformat()}
                for row in earlier]
    return {"china_per_capita_kg": str(average.value),
            "ratio_to_china": str((total_kg / average.value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)),
            "source": f"{average.source}, {average.year}; {average.note}", "previous": previous}
