"""The organizer console's pages: thin views over the services (decision 0012 for the session)."""
from __future__ import annotations

import base64
import secrets
from datetime import date, datetime, timedelta
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy.exc import DataError
from werkzeug.exceptions import HTTPException

from carbon.certificates import service as certificates
from carbon.checkout import operations, purchases
from carbon.checkout.states import ORDER_TRANSITIONS, OrderStatus, sources
from carbon.console import chart, forms, service
from carbon.console import session as console_session
from carbon.core.clock import CHINA_TZ, clock
from carbon.core.db import db
from carbon.core.errors import DomainError, RateLimited, ValidationError
from carbon.core.http import end_session
from carbon.credits import service as credits
from carbon.footprint import service as footprints
from carbon.invoices import service as invoices
from carbon.invoices.states import STATUS_NAMES as INVOICE_STATUS_NAMES
from carbon.invoices.states import InvoiceStatus
from carbon.leaderboards import service as leaderboards
from carbon.ledger import settlement
from carbon.rendering import qr_png
from carbon.scenes import service as scenes
from carbon.scenes.codes import scene_string
from carbon.scenes.models import KINDS, SEARCH_CHANNEL
from schemas.scenes import PROVINCES

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
               static_folder="static", static_url_path="/static")
OPEN = {"console.login", "console.static"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
DOWNLOADS = {"wxacode.png": "image/png", "qrcode.png": "image/png", "poster.png": "image/png",
             "poster.pdf": "application/pdf"}
KIND_NAMES = {"conference": "会议 / Conference", "scenic_spot": "景区 / Scenic spot", "supermarket": "超市 / Supermarket",
              "restaurant": "餐厅 / Restaurant", "hotel": "酒店 / Hotel", "custom": "自定义 / Custom"}
REFUNDABLE = sources(ORDER_TRANSITIONS, OrderStatus.REFUNDED)
STATUS_NAMES = {"draft": "草稿 / Draft", "live": "进行中 / Live", "closed": "已结束 / Closed"}


def me():
    return console_session.principal()


@bp.before_request
def _guard():
    console_session.check_csrf()
    if request.endpoint not in OPEN and me() is None:  # back to this page after signing in (a GET only)
        return redirect(url_for("console.login", next=request.full_path.rstrip("?") if request.method == "GET"
                                else None))
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers.setdefault("Cache-Control", "no-store")
    return response


bp.add_app_template_global(console_session.csrf_token, "csrf_token")  # macros see globals, not the context


@bp.context_processor
def _template_values() -> dict:
    return {"console_me": me, "kind_names": KIND_NAMES, "status_names": STATUS_NAMES,
            "refundable": REFUNDABLE, "receipt_states": invoices.PAID_STATES}


@bp.errorhandler(DomainError)
def _domain_error(exc: DomainError):
    return _error_page(exc.http_status, exc.message, exc.code)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    if exc.code == 400 and exc.description == "csrf":
        return _error_page(400, "表单已失效或并非来自本站，请刷新页面后重试 / The form expired or did not come from "
                                "this site: reload the page and try again", "console.csrf")
    if exc.code == 404:
        return _error_page(404, "未找到 / Not found", "not_found")
    return _error_page(exc.code or 500, exc.description or exc.name, f"http_{exc.code}")


@bp.errorhandler(DataError)
def _unstorable(exc: DataError):
    """The database refused a value a form gave (on PostgreSQL a NUL in text, even in a lookup; a
    number out of range): the console's page, as the API's handler answers its envelope."""
    end_session(remove=False)
    return _error_page(422, "输入含有无法保存的值（如 NUL 字符或超出范围的数字） / The form has a value the database "
                            "cannot store (e.g. a NUL character or a number out of range)", "validation_error")


def _error_page(status: int, message: str, code: str):
    return render_template("console/error.html", status=status, message=message, code=code), status


def page_for_any_error(status: int, message: str, code: str) -> Response:
    """The error page for what no handler here sees (``http.answer_errors_with_page``): a path that
    matches no route, a wrong method, the database away. Drawn without the signed-in organizer,
    whose read may be what failed."""
    return make_response(render_template("console/error.html", status=status, message=message, code=code,
                                         console_me=lambda: None), status)


# --- sign in / out ------------------------------------------------------------------------

@bp.route("/login", methods=["GET", "POST"])
def login():
    errors: dict = {}
    email = request.form.get("email", "").strip()
    status, retry_after = 200, None
    if request.method == "POST":
        try:
            console_session.sign_in(**forms.login_data(request.form))
            return redirect(_next_page())
        except RateLimited as exc:
            errors, status = {"_schema": [exc.message]}, 429
            retry_after = exc.details.get("retry_after_seconds", 60)
        except ValidationError as exc:
            errors = _field_errors(exc)
        except DomainError as exc:  # shown on the form (200, as every re-rendered form: see _scene_form)
            errors = {"_schema": [exc.message]}
    response = Response(render_template("console/login.html", email=email, errors=errors), status)
    if retry_after is not None:
        response.headers["Retry-After"] = str(int(retry_after))
    return response


def _next_page() -> str:
    target = request.args.get("next", "")
    parts = urlsplit(target)
    if target.startswith("/console/") and not parts.scheme and not parts.netloc and "\\" not in target \
            and target.isprintable():  # no control character (CR, LF …): a header cannot carry it
        return target
    return url_for("console.scene_list")


@bp.route("/logout", methods=["POST"])
def logout():
    console_session.sign_out()
    flash("已退出 / Signed out")
    return redirect(url_for("console.login"))


@bp.route("/")
def home():
    return redirect(url_for("console.scene_list"))


# --- scenes -------------------------------------------------------------------------------

@bp.route("/scenes")
def scene_list():
    return render_template("console/scenes.html", scenes=scenes.list_scenes(me()))


@bp.route("/scenes/new", methods=["GET", "POST"])
def scene_new():
    errors: dict = {}
    if request.method == "POST":
        try:
            scene = scenes.create_scene(me(), forms.scene_data(request.form, creating=True))
            flash("场景已创建（草稿） / Scene created (draft)")
            return redirect(url_for("console.scene_page", scene_id=scene.public_id))
        except DomainError as exc:
            errors = _field_errors(exc)
    return _scene_form(None, errors)


@bp.route("/scenes/<scene_id>/edit", methods=["GET", "POST"])
def scene_edit(scene_id: str):
    scene = scenes.get_scene(me(), scene_id)
    errors: dict = {}
    if request.method == "POST":
        try:
            scenes.update_scene(me(), scene_id, forms.scene_data(request.form, creating=False))
            flash("已保存 / Saved")
            return redirect(url_for("console.scene_page", scene_id=scene_id))
        except DomainError as exc:
            errors = _field_errors(exc)
    return _scene_form(scene, errors)


def _scene_form(scene, errors: dict):
    """The form, with what was typed and the service's field errors beside the fields. A refused
    form is re-rendered with 200 (nothing was saved; the page says why), as browsers log a 4xx
    page load as a console error."""
    values = request.form if request.method == "POST" else None
    return render_template("console/scene_form.html", scene=scene, values=values, errors=errors, kinds=KINDS,
                           provinces=PROVINCES, projects=credits.active_projects(),
                           preset_text=forms.preset_text(scene.preset) if scene else "")


def _field_errors(exc: DomainError) -> dict:
    """What the service refused (nothing of it kept), as field messages (``details``); a message
    without fields goes on the form itself."""
    db.session.rollback()
    details = {key: value if isinstance(value, list) else [value] for key, value in (exc.details or {}).items()}
    if not details or not any(isinstance(message, str) for messages in details.values() for message in messages):
        details["_schema"] = [exc.message]
    return {(key.split(".")[0] if key.startswith("preset.") else key): messages for key, messages in details.items()}


@bp.route("/scenes/<scene_id>/status", methods=["POST"])
def scene_status(scene_id: str):
    wanted = request.form.get("status", "")
    if wanted not in STATUS_NAMES:
        abort(400)
    try:
        scenes.update_scene(me(), scene_id, {"status": wanted})
        flash(f"状态 / Status: {STATUS_NAMES[wanted]}")
    except DomainError as exc:
        if exc.http_status == 404:
            raise
        flash(exc.message, "error")
    return redirect(url_for("console.scene_page", scene_id=scene_id))


@bp.route("/scenes/<scene_id>/channels", methods=["POST"])
def channel_add(scene_id: str):
    scene = scenes.get_scene(me(), scene_id)
    try:
        data = forms.channel_data(request.form)
        scenes.add_channel(me(), scene_id, data["slug"], data["label"])
        flash("渠道已添加 / Channel added")
        return redirect(url_for("console.scene_page", scene_id=scene_id) + "#codes")
    except DomainError as exc:
        if exc.http_status == 404:
            raise
        return _dashboard(scene, channel_errors=_field_errors(exc))


@bp.route("/scenes/<scene_id>")
def scene_page(scene_id: str):
    return _dashboard(scenes.get_scene(me(), scene_id))


def _dashboard(scene, channel_errors: dict | None = None):
    stats = scenes.scene_stats(me(), scene.public_id)
    board = leaderboards.top(scene, "all", limit=10)
    by_day = chart.bars([(row["day"].strftime("%m-%d"), row["kg_neutralized"]) for row in stats["by_day"]],
                        unit="kg", title="每日中和量 / kg neutralized per day")
    by_channel = chart.bars([(row["label"] or row["channel"] or "默认", row["money_raised"])
                             for row in stats["by_channel"]], unit="CNY", title="各渠道筹款 / money by channel")
    return render_template("console/scene.html", scene=scene, stats=stats, progress=board["progress"],
                           leaderboard=board["entries"], chart_day=by_day, chart_channel=by_channel,
                           scene_string=scene_string, h5_link=scenes.h5_link, search_channel=SEARCH_CHANNEL, channel_errors=channel_errors or {},
                           channel_values=request.form if channel_errors else None)


@bp.route("/scenes/<scene_id>/stats.json")
def scene_stats_json(scene_id: str):
    """The dashboard's figures, polled by console.js so they move without a reload."""
    totals = scenes.scene_stats(me(), scene_id)["totals"]
    progress = leaderboards.progress(scenes.get_scene(me(), scene_id))
    figures = {**totals, "participants": progress["participants"], "estimated_kg": progress["estimated_kg"],
               "percent": progress["percent"]}
    return jsonify({key: "—" if value is None else str(value) for key, value in figures.items()})


@bp.route("/scenes/<scene_id>/stats.csv")
def scene_stats_csv(scene_id: str):
    return Response(scenes.scene_stats_csv(me(), scene_id), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="scene-{scene_id}-stats.csv"'})


@bp.route("/scenes/<scene_id>/<any('wxacode.png', 'qrcode.png', 'poster.png', 'poster.pdf'):name>")
def scene_download(scene_id: str, name: str):
    """The channel's printed code (``?channel=``): mini-program code, QR fallback, poster PNG or PDF
    (``?source=qrcode`` draws the poster with the QR fallback)."""
    channel = request.args.get("channel", "")
    source = "qrcode" if request.args.get("source") == "qrcode" else "wxacode"
    if name == "wxacode.png":
        data = scenes.wxacode(me(), scene_id, channel).wxacode_png
    elif name == "qrcode.png":
        data = scenes.qrcode_png(me(), scene_id, channel)
    else:
        data = scenes.poster_file(me(), scene_id, channel, source=source, fmt=name.rsplit(".", 1)[1])
    stem = f"{scene_id}-{channel or 'default'}-{name.replace('.', '-' + source + '.') if 'poster' in name else name}"
    return Response(data, mimetype=DOWNLOADS[name], headers={"Content-Disposition": f'attachment; filename="{stem}"'})


# --- projects, orders, refunds, events, settlement ----------------------------------------

@bp.route("/projects")
def project_list():
    return render_template("console/projects.html", rows=service.projects())


@bp.route("/orders")
def order_list():
    status = request.args.get("status") or None
    if status and status not in set(OrderStatus):
        status = None
    listed = service.orders(me(), status)
    return render_template("console/orders.html", orders=listed, status=status, statuses=list(OrderStatus),
                           may_refund=service.orders_it_may_refund(me(), listed))


@bp.route("/orders/<order_id>")
def order_page(order_id: str):
    found = service.order(me(), order_id)
    ours = service.may_refund(me(), found)  # placed through us: else a project owner's view, without reasons
    return render_template("console/order.html", order=found, steps=service.history(found, with_reasons=ours),
                           refunds=service.refunds_of(found), may_refund=ours)


@bp.route("/orders/<order_id>/receipt.pdf")
def order_receipt(order_id: str):
    """The order's receipt (PDF, Chinese first), for any order the console shows that is paid."""
    found = service.order(me(), order_id)
    return Response(invoices.receipt_pdf(found), mimetype="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="receipt-{found.public_id}.pdf"'})


@bp.route("/orders/<order_id>/refund", methods=["GET", "POST"])
def order_refund(order_id: str):
    """Refund a paid order in full (owners only): a page that says what will happen and asks for the
    reason, then the one refund operation (carbon.checkout.operations.refund_order)."""
    me().require_owner()
    found = service.order(me(), order_id)
    if not service.may_refund(me(), found):  # a project owner's view of another's guest
        flash("只有下单所经的组织可以退款 / Only the organization the order was placed through can refund it", "error")
        return redirect(url_for("console.order_page", order_id=order_id))
    errors: dict = {}
    if request.method == "POST":
        try:
            operations.refund_order(found.public_id, request.form.get("reason", "")[:200])
            flash("已申请退款，微信支付将原路退回 / Refund requested: WeChat Pay sends the money back")
            return redirect(url_for("console.order_page", order_id=order_id))
        except ValidationError as exc:
            errors = _field_errors(exc)
        except DomainError as exc:  # not paid (any more): the order page says where it stands
            db.session.rollback()
            flash(exc.message, "error")
            return redirect(url_for("console.order_page", order_id=order_id))
    return render_template("console/refund_confirm.html", order=found, errors=errors,
                           reason=request.form.get("reason", ""))


@bp.route("/refunds")
def refund_list():
    listed = service.refunds(me())
    return render_template("console/refunds.html", refunds=listed,
                           ours=service.refunds_placed_through(me(), listed))


@bp.route("/refunds/<refund_id>/retry", methods=["POST"])
def refund_retry(refund_id: str):
    """Ask WeChat Pay again for a refund it closed (owners only)."""
    me().require_owner()
    try:
        retry = service.retry_refund(me(), refund_id)
        flash(f"已重新发起退款 / Refund asked again: {retry.public_id}")
    except LookupError:
        flash(f"没有这笔退款 / No refund {refund_id}", "error")
    except DomainError as exc:  # not failed (any more): the list says where it stands
        db.session.rollback()
        flash(exc.message, "error")
    return redirect(url_for("console.refund_list"))


@bp.route("/events")
def event_list():
    me().require_owner()
    return render_template("console/events.html", events=service.failed_events(me()))


@bp.route("/events/<int:event_id>/replay", methods=["POST"])
def event_replay(event_id: int):
    me().require_owner()
    try:
        flash(f"事件 / event {event_id}: {service.replay(me(), event_id)}")
    except LookupError:
        flash(f"没有这个失败事件 / No failed event {event_id}", "error")
    return redirect(url_for("console.event_list"))


# --- invoices: the profile, requests, the finance export -----------------------------------

@bp.route("/invoices")
def invoice_list():
    status = request.args.get("status") or None
    if status not in set(InvoiceStatus):
        status = None
    return render_template("console/invoices.html", requests=invoices.requests(me(), status), status=status,
                           profile=invoices.profile(me()), orders=invoices.invoiceable_orders(me()),
                           invoice_status_names=INVOICE_STATUS_NAMES, errors={})


@bp.route("/invoices/profile", methods=["GET", "POST"])
def invoice_profile():
    errors: dict = {}
    if request.method == "POST":
        try:
            invoices.save_profile(me(), request.form.get("title", ""), request.form.get("tax_id", ""))
            flash("发票信息已保存 / Invoice details saved")
            return redirect(url_for("console.invoice_list"))
        except ValidationError as exc:
            errors = _field_errors(exc)
    return render_template("console/invoice_profile.html", profile=invoices.profile(me()), errors=errors,
                           values=request.form if request.method == "POST" else None)


@bp.route("/invoices/request", methods=["POST"])
def invoice_request():
    try:
        made = invoices.request_invoice(me(), request.form.get("order", ""))
        flash(f"已申请发票 / Invoice requested: {made.public_id}")
    except DomainError as exc:
        if exc.http_status == 404:
            raise
        db.session.rollback()
        flash(exc.message, "error")
    return redirect(url_for("console.invoice_list"))


@bp.route("/invoices/<request_id>/<any('issue', 'reject'):action>", methods=["POST"])
def invoice_decide(request_id: str, action: str):
    """Record what finance did (owners only): issued with the fapiao's number, or rejected with a reason."""
    me().require_owner()
    try:
        if action == "issue":
            invoices.mark_issued(me(), request_id, request.form.get("fapiao_number", ""))
            flash("已标记为已开具 / Marked issued")
        else:
            invoices.reject(me(), request_id, request.form.get("reason", ""))
            flash("已驳回 / Rejected")
    except DomainError as exc:
        if exc.http_status == 404:
            raise
        db.session.rollback()
        messages = [m for ms in (exc.details or {}).values() if isinstance(ms, list) for m in ms if isinstance(m, str)]
        flash(" ".join(messages) if exc.http_status == 422 and messages else exc.message, "error")
    return redirect(url_for("console.invoice_list"))


@bp.route("/invoices.csv")
def invoice_csv():
    """Every invoice request of the organization for the finance team (UTF-8 with BOM)."""
    return Response(invoices.export_csv(me()), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="invoice-requests-{me().organization.public_id}.csv"'})


def _period() -> tuple[date, date, datetime, datetime]:
    today = clock.now().astimezone(CHINA_TZ).date()
    start = _day("start") or today.replace(day=1)
    end = _day("end") or today + timedelta(days=1)
    if end <= start:
        end = start + timedelta(days=1)
    as_time = lambda day: datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ)
    return start, end, as_time(start), as_time(end)


REPORT_YEARS = range(2000, 2100)  # a day outside is a typing slip: the default period instead


def _day(name: str) -> date | None:
    try:
        day = date.fromisoformat(request.args.get(name, ""))
    except ValueError:
        return None
    return day if day.year in REPORT_YEARS else None


@bp.route("/settlement")
def settlement_page():
    start, end, since, until = _period()
    return render_template("console/settlement.html", start=start, end=end,
                           rows=settlement.report(since, until, me().organization.id))


@bp.route("/settlement.csv")
def settlement_csv():
    start, end, since, until = _period()
    return Response(settlement.report_csv(since, until, me().organization.id), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="settlement-{start}-{end}.csv"'})


# --- the organization buys (issue 15, decision 0016) --------------------------------------

@bp.route("/buy")
def buy_page():
    """What the organization can buy for: its event's own footprint, a group, the rest of a scene."""
    return _buy_page({})


def _buy_page(errors: dict, status: int = 200):
    return render_template("console/buy.html", scenes=scenes.list_scenes(me()), errors=errors,
                           values=request.form if request.method == "POST" else None, provinces=PROVINCES,
                           footprints=footprints.host_footprints(me()), travel_rows=range(1, forms.TRAVEL_ROWS + 1),
                           certificates=certificates.organization_certificates(me().organization.id)), status


@bp.route("/buy/event", methods=["POST"])
def buy_event_footprint():
    """Save the event's own footprint (kind ``host``) and show its quote."""
    try:
        footprint = footprints.create_host(me(), forms.host_footprint_data(request.form))
    except DomainError as exc:
        if exc.http_status == 404:
            raise
        return _buy_page(_field_errors(exc))
    return redirect(url_for("console.buy_quote", kind="host", footprint_id=footprint.public_id))


@bp.route("/buy/quote")
def buy_quote():
    """The quote, computed now and shown before paying; the pay button carries a fresh idempotency key."""
    body = forms.purchase_data(request.args)
    try:
        found = purchases.quote(me(), body)
    except ValidationError as exc:
        if exc.code == "validation_error":
            raise
        flash(exc.message, "error")
        return redirect(url_for("console.buy_page"))
    return render_template("console/quote.html", quote=found, body=body, key=secrets.token_urlsafe(18))


@bp.route("/buy/orders", methods=["POST"])
def buy_order():
    """Create the organization's order for the quote (as it stands now) and go to its QR code."""
    body = forms.purchase_data(request.form)
    key = request.form.get("idempotency_key", "")
    if not 8 <= len(key) <= 64:
        abort(400)
    try:
        order, _ = purchases.buy(me(), body, key)
    except DomainError as exc:
        if exc.http_status in (403, 404):
            raise
        db.session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("console.buy_page"))
    return redirect(url_for("console.buy_order_page", order_id=order.public_id))


@bp.route("/buy/orders/<order_id>")
def buy_order_page(order_id: str):
    """The Native code_url as a QR code to scan with WeChat; the page polls until paid."""
    order = purchases.order_of(me(), order_id)
    state = purchases.state(order)
    qr = base64.b64encode(qr_png(state["code_url"])).decode() if state["code_url"] else None
    return render_template("console/pay.html", order=order, state=state, qr=qr)


@bp.route("/buy/orders/<order_id>/state.json")
def buy_order_state(order_id: str):
    return jsonify(purchases.state(purchases.order_of(me(), order_id)))
