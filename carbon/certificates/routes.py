from __future__ import annotations

from flask import Blueprint as FlaskBlueprint
from flask import Response, render_template_string, request, stream_with_context

from carbon.accounts.auth import current_user, optional_user, public
from carbon.certificates import service
from carbon.core.errors import DomainError
from carbon.core.openapi import Blueprint, answers
from schemas.certificates import CertificateOut, CertificatesOut, VerificationOut

blp = Blueprint("certificates", __name__, url_prefix="/api/v1/certificates",
                description="荣誉证书与公开验证 / Honour certificates and public verification")


@blp.route("", methods=["GET"])
@blp.response(200, CertificatesOut)
def mine():
    """The guest's certificates, newest first (with their order ids)."""
    user = current_user()
    return {"items": [service.view(c.number, viewer_id=user.id) for c in service.mine(user.id)]}


@blp.route("/chain.jsonl", methods=["GET"])
@blp.response(200, content_type="application/x-ndjson")
@public
def chain():
    """The whole chain, one JSON line per entry in order, for checking offline (docs/verify_chain.py)."""
    return Response(stream_with_context(service.chain()), mimetype="application/x-ndjson")


@blp.route("/<string:number>", methods=["GET"])
@blp.response(200, CertificateOut)
@public
def get(number):
    """A certificate's public record (a display name, never an openid or phone) and its status; with
    its owner's token also the order, the amount paid and whether the push was sent."""
    viewer = optional_user()
    return service.view(number, viewer_id=viewer.id if viewer else None)


NOT_MODIFIED = "未变化 / Not modified: the ``If-None-Match`` names the picture's ``ETag``"


def _picture(number: str, kind: str):
    etag, media_type, content = service.picture(number, kind)
    response = Response(content, mimetype=media_type)
    response.set_etag(etag)
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response.make_conditional(request)


@blp.route("/<string:number>/card.jpg", methods=["GET"])
@answers(409, 412)  # a record changed since it was issued; If-Match that does not hold
@blp.response(200, content_type="image/jpeg")
@blp.alt_response(304, description=NOT_MODIFIED)
@public
def card(number):
    """The share card (1000×800, WeChat's 5:4 share ratio); ``ETag`` and ``If-None-Match`` → 304."""
    return _picture(number, "card")


@blp.route("/<string:number>/poster.png", methods=["GET"])
@answers(409, 412)  # a record changed since it was issued; If-Match that does not hold
@blp.response(200, content_type="image/png")
@blp.alt_response(304, description=NOT_MODIFIED)
@public
def poster(number):
    """The Moments poster (750 px wide) with the mini-program code that opens the certificate."""
    return _picture(number, "poster")


@blp.route("/<string:number>/verify", methods=["GET"])
@blp.response(200, VerificationOut)
@public
def verify(number):
    """Recompute the certificate's hash and links and compare its serials with the retirements."""
    return service.verify(number)


page = FlaskBlueprint("certificate_page", __name__)

PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ number }} · 点点碳中和证书</title><link rel="icon" href="data:,">
<style>body{font-family:system-ui,"PingFang SC","Microsoft YaHei",sans-serif;max-width:640px;margin:0 auto;padding:1em;
color:#1d2a22}h1{color:#1f7a4d;font-size:1.4em}.card{border:1px solid #d7e3dc;border-radius:8px;padding:1em}
.ok{color:#1f7a4d}.bad{color:#b53f2f}code{word-break:break-all;font-size:.8em}td{padding:.2em .6em .2em 0}
small{color:#5b6b62}</style></head><body>
{% if error %}<h1>证书 {{ number }}</h1><p class="bad">{{ error }}</p>{% else %}
<h1>碳中和荣誉证书 <small>Carbon neutrality certificate</small></h1>
<div class="card"><p><b><bdi>{{ r.beneficiary }}</bdi></b> 已中和 <b>{{ r.kg }} kg</b> CO₂e
{% if r.scene %}（<bdi>{{ r.scene.name }}</bdi>，{{ r.scene.date }}）{% elif r.event %}（<bdi>{{ r.event }}</bdi>）{% endif %}<br>
<small><bdi>{{ r.beneficiary }}</bdi> neutralized {{ r.kg }} kg CO₂e{% if r.scene %} at <bdi>{{ r.scene.name }}</bdi>
{%- elif r.event %} at <bdi>{{ r.event }}</bdi>{% endif %}</small></p>
{% if erased %}<p><small>受益人已注销账号，其姓名已删除；证书与链不变。/ The beneficiary deleted their account: the name
was erased, the certificate and the chain are unchanged.</small></p>{% endif %}
<table><tr><td>编号 / No.</td><td>{{ number }}</td></tr>
<tr><td>签发 / Issued</td><td>{{ r.issued_at }}</td></tr>
{% for p in r.projects %}<tr><td>项目 / Project</td><td><bdi>{{ p.name }}</bdi> ({{ p.registry }})</td></tr>
{% for x in p.retirements %}<tr><td>注销序号 / Serials</td><td>{{ x.vintage }}: {{ x.serials[0] }}–{{ x.serials[1] }}
({{ x.kg }} kg)</td></tr>{% endfor %}{% endfor %}
{% if r.dataset_version %}<tr><td>排放因子 / Factors</td><td>{{ r.dataset_version }}</td></tr>{% endif %}</table>
{% if status == "revoked" %}<p class="bad">已撤销 / Revoked {{ revocation.revoked_at }}: <bdi>{{ revocation.reason }}</bdi></p>{% endif %}
<p class="{{ 'ok' if checks_pass else 'bad' }}">{{ '链校验通过 / The chain checks out' if checks_pass
 else '链校验失败 / The chain does not check out' }}: {% for k, v in checks.items() %}{{ k }} {{ '✓' if v else '✗' }}
{% endfor %}</p><p><small>SHA-256</small><br><code>{{ hash }}</code><br><small>prev</small><br><code>{{ r.prev }}</code></p>
<p><small>自行验证 / Check it yourself: <a href="/api/v1/certificates/chain.jsonl">chain.jsonl</a></small></p></div>
{% endif %}</body></html>"""


@page.route("/c/<string:number>")
def certificate_page(number):
    """The public, mobile-first page of a certificate: the record, its serials and whether it checks out.
    Names (guests', scenes', projects') and the revocation's reason are each set in a ``<bdi>``: a
    direction mark typed in one (U+202E) cannot turn the sentence around it, kilograms included."""
    try:
        checked = service.verify(number)
    except DomainError as exc:
        return render_template_string(PAGE, number=number, error=exc.message), exc.http_status
    if not checked["checks"]["hash"]:  # changed since it was issued: its claims are not shown as the certificate's
        return render_template_string(PAGE, number=number, error=(
            "链校验失败：此证书的记录已被改动，不予显示 / The chain does not check out: this certificate's record "
            "was changed since it was issued and is not shown")), 200
    shown = service.view(number, viewer_id=None)
    record = {**shown["record"], "beneficiary": shown["beneficiary"]}
    return render_template_string(PAGE, number=number, error=None, r=record, status=shown["status"],
                                  erased="beneficiary" not in checked["checks"],  # no name left to check
                                  revocation=shown["revocation"], hash=shown["hash"], checks=checked["checks"],
                                  checks_pass=all(checked["checks"].values()))
