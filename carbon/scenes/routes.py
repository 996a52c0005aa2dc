from __future__ import annotations

from flask import Blueprint as FlaskBlueprint
from flask import render_template_string, request

from carbon.accounts.auth import public
from carbon.core.errors import DomainError
from carbon.core.openapi import Blueprint, DumpOnce, answers
from carbon.credits import service as credits
from carbon.scenes import service
from schemas.scenes import ProjectsOut, ResolveOut, ResolveQuery, SceneSearchOut, SceneSearchQuery

blp = Blueprint("scenes", __name__, url_prefix="/api/v1", description="场景 / Scenes")
h5 = FlaskBlueprint("h5", __name__)


@blp.route("/scenes", methods=["GET"])
@blp.arguments(SceneSearchQuery, location="query")
@blp.response(200, SceneSearchOut)
@public
def find_scenes(query):
    """Live scenes for a guest without a code: by words, kind, city and day; nearest first with lat/lng.
    Open one with its ``scene_string`` (GET /scenes/resolve): the visit counts under the channel ``search``."""
    return service.find_scenes(q=query["q"], kind=query.get("kind"), city=query.get("city"), day=query.get("date"),
                               lat=query.get("lat"), lng=query.get("lng"), page=query["page"], limit=query["limit"])


@blp.route("/scenes/resolve", methods=["GET"])
@answers(404, 410)
@blp.arguments(ResolveQuery, location="query")
@blp.response(200, ResolveOut)
@public
def resolve(query):
    """The scene a scanned code names (pass query.scene as received), its preset, offer and progress."""
    return _RESOLVED(service.resolve(query["scene"]))  # a cached view is dumped once, not per scan


_RESOLVED = DumpOnce(ResolveOut)


@blp.route("/projects", methods=["GET"])
@blp.response(200, ProjectsOut)
@public
def projects():
    """Credit projects on offer."""
    return {"items": credits.active_projects()}


PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{{ title }}</title></head>
<body style="font-family:sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem">
<h1>{{ title }}</h1>{% if subtitle %}<p>{{ subtitle }}</p>{% endif %}<p>{{ text }}</p></body></html>"""


@h5.route("/s")
def scene_page():
    """What a plain QR code's link opens: the scene's name and how to take part in WeChat."""
    try:
        view = service.resolve(request.args.get("scene", ""))
    except DomainError as exc:
        return render_template_string(PAGE, title="点点碳中和 / Diandian", subtitle=None, text=exc.message), \
            exc.http_status
    scene = view["scene"]
    return render_template_string(PAGE, title=scene["name_zh"], subtitle=scene["name_en"],
                                  text="请用微信扫描海报上的小程序码参与碳中和 / Open WeChat and scan the "
                                       "mini-program code on the poster to go carbon neutral.")
