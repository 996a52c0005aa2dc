"""``/simulator``: a phone-sized page that plays the mini-program against the public API and the sandbox."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, render_template, request
from sqlalchemy import select

from carbon.core.db import db
from carbon.scenes import codes
from carbon.scenes.models import Scene
from carbon.screen.routes import SCRIPT_PAGE_CSP
from carbon.simulator import bridge

bp = Blueprint("simulator", __name__, template_folder="templates", static_folder="static",
               static_url_path="/simulator/static")
SCENES_SHOWN = 12


@bp.after_request
def _page_policy(response: Response) -> Response:
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = SCRIPT_PAGE_CSP
    return response


@bp.route("/simulator")
def page():
    """The simulator; the codes offered are those printed for live scenes (what a guest could scan)."""
    scenes = db.session.scalars(select(Scene).where(Scene.status == "live").order_by(Scene.id.desc())
                                .limit(SCENES_SHOWN)).all()
    offered = [{"name": scene.name_zh, "codes": [{"label": channel.label or channel.slug or "默认 / Default",
                                                   "scene": codes.scene_string(scene.code, channel.slug)}
                                                  for channel in scene.channels]} for scene in scenes]
    return render_template("simulator/page.html", scenes=offered)


@bp.route("/simulator/wx/login", methods=["POST"])
def wx_login():
    """``wx.login()`` as the WeChat app does it: a one-time code for the simulated guest (``{openid}``)."""
    return jsonify(bridge.login_code(bridge.body_of(request.get_data())))


@bp.route("/simulator/wx/request-payment", methods=["POST"])
def wx_request_payment():
    """``wx.requestPayment(params)``: the guest's tap on 支付; WeChat Pay then notifies the service."""
    return jsonify(bridge.request_payment(bridge.body_of(request.get_data())))
