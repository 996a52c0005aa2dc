"""Organizations buy (issue 15, decision 0016): a quote for the event's own footprint (``host``), for
a group of attendees at the scene's average footprint (``group``), or for the rest of the scene's
estimated footprint (``top_up``), then the organization's order for it through the same checkout
(orders.create_organization_order: the same idempotency, holds, reservation and payment row; one
confirmation; the organization as buyer and beneficiary), paid by WeChat Pay Native.

The figures come from the existing rules, never recomputed here: a host footprint from the
calculator, a group from leaderboards.attendees_grams (the rule behind the scene's estimate), a
top-up from leaderboards.progress (estimate minus what was neutralized). A quote is computed when
it is shown and again when the order is made: the order is for what is true at purchase time.

Another organization's scenes and footprints are not found (404). Anyone of the organization may
see a quote and its orders; only an owner spends its money (403 ``auth.owner_required``)."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select

from carbon.certificates.models import Certificate
from carbon.checkout import orders
from carbon.checkout.models import Order
from carbon.core import extensions as ext
from carbon.core.db import db
from carbon.core.errors import ValidationError
from carbon.core.units import cny, cny_ceil, grams_to_kg, kg
from carbon.credits.models import Project
from carbon.footprint import service as footprints
from carbon.footprint.calculator import exact_total
from carbon.footprint.models import Footprint
from carbon.leaderboards import service as leaderboards
from carbon.organizers.service import Principal
from carbon.scenes import service as scenes
from carbon.scenes.models import Scene

KINDS = ("host", "group", "top_up")
KG_PER_TONNE = Decimal(1000)


class NoAverageYet(ValidationError):
    code = "purchase.no_average"
    message = "该场景还没有嘉宾计算过碳足迹，无法按人均估算 / No guest of this scene has calculated a footprint yet"


class NoEstimate(ValidationError):
    code = "purchase.no_estimate"
    message = ("该场景没有总量估算（需预计人数和嘉宾足迹） / The scene has no estimated total "
               "(it needs an expected attendance and guests' footprints)")


class AlreadyNeutral(ValidationError):
    code = "purchase.already_neutral"
    message = "该场景已全部中和，无需补足 / The scene is already neutral: nothing to top up"


@dataclass(frozen=True)
class Quote:
    """What an organization would buy now, shown before it pays."""

    kind: str
    kg: Decimal  # to neutralize, exact to the gram
    units: int
    unit_kg: Decimal
    estimated_amount: Decimal  # CNY at the project's list price; the order prices its serials exactly
    project: Project
    scene: Scene | None
    footprint: Footprint | None
    event_name: str | None
    purpose: str
    attendees: int | None = None
    estimated_kg: Decimal | None = None  # top_up: the scene's estimate
    neutralized_kg: Decimal | None = None  # top_up: neutralized so far (guests and organizations)


def quote(principal: Principal, body: dict) -> Quote:
    """The quote for ``body`` (``kind`` and ``footprint_id``, ``scene``, ``attendees``, ``project_id``)."""
    kind, extra, to_cover = body["kind"], {}, None
    if kind == "host":
        footprint = footprints.host_footprint(principal, body["footprint_id"])
        scene = db.session.get(Scene, footprint.scene_id) if footprint.scene_id else None
        wanted = Decimal(footprint.result["total_kg"])
        to_cover = exact_total(footprint.result)  # rounded up to the unit once, as a guest's order of it
        event_name = footprint.request.get("event_name") or (scene.name_zh if scene else None)
        purpose = f"{event_name}，活动碳中和 / the event's own footprint"
    else:
        footprint = None
        scene = scenes.get_scene(principal, body["scene"])  # another organization's: not found
        event_name = scene.name_zh
        if kind == "group":
            grams = leaderboards.attendees_grams(scene, body["attendees"])
            if grams is None:
                raise NoAverageYet()
            wanted, extra = grams_to_kg(grams), {"attendees": body["attendees"]}
            purpose = f"{scene.name_zh}，{body['attendees']} 位参会者碳中和 / {body['attendees']} attendees"
        else:
            progress = leaderboards.progress(scene)
            if progress["estimated_kg"] is None:
                raise NoEstimate()
            wanted = progress["estimated_kg"] - progress["neutralized_kg"]
            if wanted <= 0:
                raise AlreadyNeutral(details={"estimated_kg": str(progress["estimated_kg"]),
                                              "neutralized_kg": str(progress["neutralized_kg"])})
            extra = {"estimated_kg": progress["estimated_kg"], "neutralized_kg": progress["neutralized_kg"]}
            purpose = f"{scene.name_zh}，补足全场碳中和 / topping the scene up to neutral"
    project = orders.project_for(body.get("project_id"), scene.id if scene else None)
    units = orders.orderable_units(wanted if to_cover is None else to_cover, project)  # never below it
    list_price = cny_ceil(units * project.unit_kg * project.price_per_tonne / KG_PER_TONNE)
    return Quote(kind=kind, kg=kg(wanted), units=units, unit_kg=project.unit_kg,
                 estimated_amount=max(list_price, cny(ext.settings().MIN_ORDER_AMOUNT)), project=project,
                 scene=scene, footprint=footprint, event_name=event_name, purpose=purpose, **extra)


def buy(principal: Principal, body: dict, idempotency_key: str) -> tuple[Order, dict[str, str]]:
    """The organization's order for the quote of ``body`` as it stands now, and its Native
    ``code_url`` (the same key again: the same order)."""
    principal.require_owner()

    def understand() -> orders.Wanted:
        found = quote(principal, body)
        return orders.Wanted(kg=found.units * found.unit_kg, beneficiary_name=principal.organization.name,
                             purpose=found.purpose,
                             footprint_id=found.footprint.id if found.footprint else None,
                             scene={"scene_id": found.scene.id} if found.scene else {},
                             project_public_id=found.project.public_id)
    return orders.create_organization_order(principal.organization, body, idempotency_key, understand)


def order_of(principal: Principal, public_id: str) -> Order:
    """One of the organization's own orders (bought by it); another's is not found."""
    found = db.session.scalar(select(Order).where(Order.public_id == public_id,
                                                  Order.organization_id == principal.organization.id))
    if found is None:
        raise orders.OrderNotFound()
    return found


def state(order: Order) -> dict:
    """An organization's order as the console polls it: status, the code_url while it waits, and
    the certificate once issued."""
    number = db.session.scalar(select(Certificate.number).where(Certificate.order_id == order.id))
    return {"order": order.public_id, "status": order.status, "amount": str(order.amount),
            "kg": str(order.kg), "code_url": orders.payment_params(order).get("code_url"),
            "certificate": number, "paid": order.paid_at is not None}
