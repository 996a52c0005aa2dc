from __future__ import annotations

from carbon.accounts.auth import current_user, public
from carbon.core.db import kept_after_commit
from carbon.core.openapi import Blueprint, answers
from carbon.footprint import service
from schemas.footprint import FootprintIn, FootprintOut, HistoryOut, HistoryQuery

blp = Blueprint("footprints", __name__, url_prefix="/api/v1/footprints",
                description="碳足迹计算 / Footprint calculator")


@blp.route("/preview", methods=["POST"])
@answers(404, 410)  # the scene given is unknown or closed
@blp.arguments(FootprintIn)
@blp.response(200, FootprintOut)
@public
def preview(body):
    """Calculate without saving (called while the guest types; no login needed)."""
    return service.preview(body)


@blp.route("", methods=["POST"])
@answers(404, 410)
@blp.arguments(FootprintIn)
@blp.response(201, FootprintOut)
@kept_after_commit()  # answers the footprint it saves
def create(body):
    """Calculate and save for the logged-in guest."""
    return service.create(current_user(), body)


@blp.route("", methods=["GET"])
@blp.arguments(HistoryQuery, location="query")
@blp.response(200, HistoryOut)
def history(query):
    """The guest's footprints, newest first."""
    return {"items": service.history(current_user(), query.get("kind"), query["limit"])}


@blp.route("/<string:footprint_id>", methods=["GET"])
@blp.response(200, FootprintOut)
def get(footprint_id):
    """One of the guest's footprints (someone else's is 404)."""
    return service.get(current_user(), footprint_id)
