"""Organizations buy, for machines (the console's pages do the same, decision 0016): the event's own
footprint, a quote, the order paid by WeChat Pay Native (its ``code_url``), and its state."""
from __future__ import annotations

from carbon.checkout import purchases
from carbon.checkout.routes import IDEMPOTENCY_HEADER, idempotency_key
from carbon.core.db import kept_after_commit
from carbon.core.openapi import Blueprint, answers
from carbon.footprint import service as footprints
from carbon.organizers.auth import current_principal, organizer_only
from schemas.footprint import HostFootprintIn
from schemas.purchases import HostFootprintOut, PurchaseIn, PurchaseStateOut, QuoteOut

blp = Blueprint("admin_purchases", __name__, url_prefix="/api/v1/admin",
                description="组织者：组织购买 / Organizers: the organization buys")


@blp.route("/footprints", methods=["POST"])
@answers(404)
@blp.arguments(HostFootprintIn)
@blp.response(201, HostFootprintOut)
@organizer_only
def create_host_footprint(body):
    """The event's own footprint (kind ``host``): venue electricity, catering, materials, staff travel."""
    footprint = footprints.create_host(current_principal(), body)
    return {**footprints.present(footprint, with_comparison=False), "event_name": footprint.request.get("event_name")}


@blp.route("/purchases/quote", methods=["POST"])
@answers(404)
@blp.arguments(PurchaseIn)
@blp.response(200, QuoteOut)
@organizer_only
def quote(body):
    """What the organization would buy now: the event's footprint, a group, or the scene's rest."""
    return purchases.quote(current_principal(), body)


@blp.route("/purchases", methods=["POST"])
@answers(403, 404, 409, 502)  # staff; another's scene; key busy or reused, sold out, holds; WeChat Pay
@blp.doc(parameters=[{"in": "header", "name": IDEMPOTENCY_HEADER, "required": True, "schema": {
    "type": "string", "minLength": 1, "maxLength": 64}, "description": "the same key returns the same order"}])
@blp.arguments(PurchaseIn)
@blp.response(201, PurchaseStateOut)
@organizer_only
@kept_after_commit()  # answers the order it writes
def buy(body):
    """The organization's order for the quote as it stands now (owners only), with its Native ``code_url``."""
    current_principal().require_owner()
    order, _ = purchases.buy(current_principal(), body, idempotency_key())
    return purchases.state(order)


@blp.route("/purchases/<string:order_id>", methods=["GET"])
@answers(404)
@blp.response(200, PurchaseStateOut)
@organizer_only
def purchase_state(order_id):
    """One of the organization's orders: its status, the code_url while it waits, its certificate."""
    return purchases.state(purchases.order_of(current_principal(), order_id))
