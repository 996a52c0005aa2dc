from __future__ import annotations

from flask import Response

from carbon.core.openapi import Blueprint, answers
from carbon.organizers.auth import current_principal, organizer_only
from carbon.scenes import service
from schemas.scenes import (
    ChannelIn,
    ChannelOut,
    ChannelQuery,
    PosterQuery,
    SceneCreateIn,
    SceneOut,
    ScenePatchIn,
    ScenesOut,
    StatsOut,
    WxaCodeIn,
)

blp = Blueprint("admin_scenes", __name__, url_prefix="/api/v1/admin/scenes",
                description="组织者：场景、码与海报、统计 / Organizers: scenes, codes, posters, statistics")


@blp.route("", methods=["GET"])
@blp.response(200, ScenesOut)
@organizer_only
def list_scenes():
    return {"items": service.list_scenes(current_principal())}


@blp.route("", methods=["POST"])
@answers(409)
@blp.arguments(SceneCreateIn)
@blp.response(201, SceneOut)
@organizer_only
def create_scene(body):
    """Create a scene (draft) with its default code; preset defaults follow the kind."""
    return service.create_scene(current_principal(), body)


@blp.route("/<string:scene_id>", methods=["GET"])
@blp.response(200, SceneOut)
@organizer_only
def get_scene(scene_id):
    return service.get_scene(current_principal(), scene_id)


@blp.route("/<string:scene_id>", methods=["PATCH"])
@answers(409)
@blp.arguments(ScenePatchIn)
@blp.response(200, SceneOut)
@organizer_only
def update_scene(body, scene_id):
    """Edit; ``status`` moves draft → live → closed (closed → live reopens)."""
    return service.update_scene(current_principal(), scene_id, body)


@blp.route("/<string:scene_id>/channels", methods=["POST"])
@answers(409)
@blp.arguments(ChannelIn)
@blp.response(201, ChannelOut)
@organizer_only
def add_channel(body, scene_id):
    """A printed code for one channel (door, badge, table 12): stats are kept per channel."""
    return service.add_channel(current_principal(), scene_id, body["slug"], body["label"])


@blp.route("/<string:scene_id>/wxacode", methods=["POST"])
@answers(429, 502)  # fetched from WeChat
@blp.arguments(WxaCodeIn)
@blp.response(200, ChannelOut)
@organizer_only
def fetch_wxacode(body, scene_id):
    """Fetch the channel's mini-program code from WeChat (kept; refetched only with regenerate)."""
    slug = body.pop("channel")
    return service.wxacode(current_principal(), scene_id, slug, **body)


@blp.route("/<string:scene_id>/wxacode.png", methods=["GET"])
@answers(429, 502)  # fetched from WeChat
@blp.arguments(ChannelQuery, location="query")
@blp.response(200, content_type="image/png")
@organizer_only
def wxacode_png(query, scene_id):
    """The stored mini-program code image (fetched with the defaults the first time)."""
    channel = service.wxacode(current_principal(), scene_id, query["channel"])
    return Response(channel.wxacode_png, mimetype="image/png")


@blp.route("/<string:scene_id>/qrcode.png", methods=["GET"])
@blp.arguments(ChannelQuery, location="query")
@blp.response(200, content_type="image/png")
@organizer_only
def qrcode_png(query, scene_id):
    """A plain QR code of the scene's H5 link: the fallback before the mini-program is published."""
    return Response(service.qrcode_png(current_principal(), scene_id, query["channel"]), mimetype="image/png")


@blp.route("/<string:scene_id>/poster.png", methods=["GET"])
@answers(429, 502)  # fetched from WeChat
@blp.arguments(PosterQuery, location="query")
@blp.response(200, content_type="image/png")
@organizer_only
def poster_png(query, scene_id):
    """A printable A4 poster: the scene's name, the code, one line of instructions."""
    return Response(service.poster_file(current_principal(), scene_id, query["channel"], source=query["source"]),
                    mimetype="image/png")


@blp.route("/<string:scene_id>/poster.pdf", methods=["GET"])
@answers(429, 502)  # fetched from WeChat
@blp.arguments(PosterQuery, location="query")
@blp.response(200, content_type="application/pdf")
@organizer_only
def poster_pdf(query, scene_id):
    """The poster as a one-page A4 PDF for print shops."""
    data = service.poster_file(current_principal(), scene_id, query["channel"], source=query["source"], fmt="pdf")
    return Response(data, mimetype="application/pdf")


@blp.route("/<string:scene_id>/stats", methods=["GET"])
@blp.response(200, StatsOut)
@organizer_only
def scene_stats(scene_id):
    """Visits, logins, footprints, kg neutralized and money raised: totals, by channel, by day."""
    return service.scene_stats(current_principal(), scene_id)


@blp.route("/<string:scene_id>/stats.csv", methods=["GET"])
@blp.response(200, content_type="text/csv")
@organizer_only
def scene_stats_csv(scene_id):
    """The same counters per day and channel as CSV (UTF-8 with BOM)."""
    text = service.scene_stats_csv(current_principal(), scene_id)
    return Response(text, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="scene-{scene_id}-stats.csv"'})
