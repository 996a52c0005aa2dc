from __future__ import annotations

from carbon.accounts.auth import current_user, public
from carbon.core.openapi import Blueprint, answers
from carbon.leaderboards import service
from carbon.scenes import service as scenes
from schemas.leaderboards import BoardQuery, LeaderboardOut, StandingOut, StandingQuery

blp = Blueprint("leaderboards", __name__, url_prefix="/api/v1/leaderboards",
                description="排行榜 / Leaderboards")


@blp.route("", methods=["GET"])
@answers(404)
@blp.arguments(BoardQuery, location="query")
@blp.response(200, LeaderboardOut)
@public
def board(query):
    """The top guests of a scene (or of everyone) this week, this month or all time, with the
    scene's progress toward neutral; ``board=organizations``: the organizations that bought for it,
    ranked apart from the guests."""
    scene = scenes.shown_scene(query["scene"]) if query.get("scene") else None
    if query["board"] == "organizations":
        return service.organizations_top(scene, query["period"], query["limit"])
    return service.top(scene, query["period"], query["limit"])


@blp.route("/me", methods=["GET"])
@answers(404)
@blp.arguments(StandingQuery, location="query")
@blp.response(200, StandingOut)
def me(query):
    """The guest's own rank with the neighbours above and below."""
    scene = scenes.shown_scene(query["scene"]) if query.get("scene") else None
    return service.standing(scene, query["period"], current_user().id, query["neighbours"])
