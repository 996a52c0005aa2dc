"""Inventory: blocks of serials minus active reservations minus retirements.

Allocation takes the project's blocks' write locks first (an UPDATE of each block row, in id order,
so two buyers never allocate from the same picture and never deadlock), then hands out the lowest
free serials. The database backs this: active reservations and retirements cannot overlap.
Holds are locked only through ``lock_holds``, by order id then serial, whichever path takes them
(a new order's sweep of expired holds, confirmation's retire, release), so no two paths cross.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import bindparam, func, insert, literal_column, select, union_all, update
from sqlalchemy.exc import DBAPIError

from carbon.core.clock import utcnow
from carbon.core.db import db
from carbon.core.errors import Conflict, NotFound, ValidationError
from carbon.core.ids import new_public_id
from carbon.core.units import ceil_to_unit, to_decimal, to_fen
from carbon.credits.models import Project, Reservation, Retirement, SerialBlock, Vintage

KG_PER_TONNE = Decimal(1000)


class SoldOut(Conflict):
    code = "credits.sold_out"
    message = "该项目剩余减排量不足 / Not enough credits left in this project"


class ProjectNotFound(NotFound):
    code = "project.not_found"
    message = "未找到该项目 / Project not found"


class SerialsOverlap(Conflict):
    code = "credits.serials_overlap"
    message = "序列号与已有区块重叠 / These serials overlap an existing block"


MAX_PRICE_PER_TONNE = Decimal("9999999999.99")  # the column's Numeric(12, 2)
MAX_SERIAL = 2**63 - 1  # BIGINT


def active_projects() -> list[Project]:
    """The projects on offer, oldest first."""
    return list(db.session.scalars(select(Project).where(Project.status == "active").order_by(Project.id)))


def ceil_units(kg_wanted: Decimal, unit_kg: Decimal) -> int:
    """Whole sale units covering ``kg_wanted``: never below the footprint."""
    return int(ceil_to_unit(kg_wanted, unit_kg) / unit_kg)


def blocks_of(project: Project) -> list[SerialBlock]:
    return list(db.session.scalars(select(SerialBlock).join(Vintage).where(Vintage.project_id == project.id)
                                   .order_by(SerialBlock.id)))


def lock_blocks(project: Project) -> list[SerialBlock]:
    """Take the write lock on every block of the project (row locks on PostgreSQL, the database
    write lock on SQLite) before reading what is taken."""
    blocks = blocks_of(project)
    for block in blocks:  # one at a time, ascending: a fixed lock order
        db.session.execute(update(SerialBlock).where(SerialBlock.id == block.id)
                           .values(lock_version=SerialBlock.lock_version + 1))
    return blocks


def _gaps_statement():
    """The free ranges of the block ``:block`` spanning ``:first``-``:last``: the gaps between its taken
    ranges (active holds, retirements) in serial order, found by a window, and the end after them."""
    block, floor, last = bindparam("block"), bindparam("first") - 1, bindparam("last")
    taken = union_all(
        select(Reservation.first_serial.label("first"), Reservation.last_serial.label("last"))
        .where(Reservation.block_id == block, Reservation.status == "active"),
        select(Retirement.first_serial, Retirement.last_serial).where(Retirement.block_id == block)).subquery()
    covered = func.coalesce(func.max(taken.c.last).over(order_by=taken.c.first, rows=(None, -1)), floor)
    edges = select(taken.c.first, covered.label("covered")).subquery()  # the highest serial taken below each range
    before = select((edges.c.covered + 1).label("gap_first"), (edges.c.first - 1).label("gap_last")) \
        .where(edges.c.first > edges.c.covered + 1)
    end = func.coalesce(func.max(taken.c.last), floor)
    after = select(end + 1, last).select_from(taken).having(end < last)
    return union_all(before, after).order_by(literal_column("gap_first"))


GAPS = _gaps_statement()


def free_ranges(block: SerialBlock) -> list[tuple[int, int]]:
    """The block's free serials as ranges, lowest first: its range less its active holds and its
    retirements. The database finds the gaps, so only they come back, however many orders have
    taken serials from the block (bench/bench_inventory.py)."""
    found = db.session.execute(GAPS, {"block": block.id, "first": block.first_serial, "last": block.last_serial})
    return [(int(first), int(last)) for first, last in found]


def reserve(project: Project, order_id: int, units: int, expires_at: datetime) -> Decimal:
    """Hold ``units`` serials (lowest free first, across blocks) for an order; SoldOut when short.
    Holds past their expiry are released first (under the same locks): an expired hold never blocks
    another guest, whether or not the expiry job has run. Returns the price in CNY, exact (each
    block has its own price), before rounding to the fen."""
    reservations, price, wanted = [], Decimal(0), units
    blocks = lock_blocks(project)
    _release_holds(lock_holds(Reservation.block_id.in_([block.id for block in blocks]),
                              Reservation.expires_at <= utcnow()))
    for block in blocks:
        for first, last in free_ranges(block):
            if wanted == 0:
                break
            take = min(wanted, last - first + 1)
            reservations.append(Reservation(block_id=block.id, order_id=order_id, first_serial=first,
                                            last_serial=first + take - 1, expires_at=expires_at))
            price += take * project.unit_kg * block.price_per_tonne / KG_PER_TONNE
            wanted -= take
    if wanted:
        raise SoldOut(details={"available_units": units - wanted, "requested_units": units})
    db.session.add_all(reservations)
    return price


def inventory(project: Project) -> dict[str, int]:
    """Units in the project's blocks: ``total``, ``held`` (unexpired holds), ``retired`` and ``remaining``."""
    total = sum(block.size for block in blocks_of(project))
    held = db.session.scalar(select(func.coalesce(func.sum(Reservation.last_serial - Reservation.first_serial + 1), 0))
                             .join(SerialBlock).join(Vintage)
                             .where(Vintage.project_id == project.id, Reservation.status == "active",
                                    Reservation.expires_at > utcnow()))
    retired = db.session.scalar(select(func.coalesce(func.sum(Retirement.quantity), 0))
                                .where(Retirement.project_id == project.id))
    return {"total": total, "held": int(held), "retired": int(retired),
            "remaining": total - int(held) - int(retired)}


def available_units(project: Project) -> int:
    return inventory(project)["remaining"]


HELD = (select(Reservation.order_id, Reservation.id, Reservation.block_id, Reservation.first_serial,
               Reservation.last_serial, Vintage.label)
        .join(SerialBlock, SerialBlock.id == Reservation.block_id).join(Vintage, Vintage.id == SerialBlock.vintage_id)
        .where(Reservation.status == "active").order_by(Reservation.order_id, Reservation.first_serial)
        .with_for_update(of=Reservation))


def lock_holds(*where) -> list:
    """The active holds matching ``where``, locked in the one order every path takes them in: by
    order id, then serial (PostgreSQL locks the rows as sorted). Rows of ``HELD``: order id, hold
    id, block id, first and last serial, vintage label. The new order's sweep of expired holds,
    retire and release all lock holds here; an UPDATE by criteria would lock them in scan order
    and cross another path's locks."""
    return list(db.session.connection().execute(HELD.where(*where)))


def _release_holds(holds: list) -> None:
    if holds:
        table = Reservation.__table__
        db.session.connection().execute(update(table).where(table.c.id.in_([hold.id for hold in holds]))
                                        .values(status="released"))


def retire(orders: list) -> dict[int, list[str] | None]:
    """Turn each order's active holds into retirements (the same serials) in the name and for the
    purpose the order gives, in the caller's transaction. Per order id: the new retirements' public
    ids, or None (and nothing changed for it) when its holds no longer cover it (they expired and
    were released).

    Each order needs ``id``, ``units``, ``project_id``, ``unit_kg``, ``user_id`` or
    ``organization_id`` (the beneficiary), ``beneficiary_name`` and ``purpose``. Three statements, however many orders: lock the holds, consume, insert."""
    held: dict[int, list] = {order.id: [] for order in orders}
    for order_id, *hold in lock_holds(Reservation.order_id.in_(list(held))):
        held[order_id].append(hold)
    now, consumed, rows, result = utcnow(), [], [], {}
    for order in orders:
        holds = held[order.id]
        if sum(last - first + 1 for _, _, first, last, _ in holds) != order.units:
            result[order.id] = None
            continue
        result[order.id] = []
        for reservation_id, block_id, first, last, label in holds:
            quantity = last - first + 1
            consumed.append(reservation_id)
            rows.append({"public_id": new_public_id("ret"), "block_id": block_id, "order_id": order.id,
                         "project_id": order.project_id, "vintage_label": label, "first_serial": first,
                         "last_serial": last, "quantity": quantity, "kg": quantity * order.unit_kg,
                         "beneficiary_user_id": order.user_id,
                         "beneficiary_organization_id": getattr(order, "organization_id", None),
                         "beneficiary_name": order.beneficiary_name,
                         "purpose": order.purpose, "retired_at": now})
            result[order.id].append(rows[-1]["public_id"])
    if consumed:
        sql, table = db.session.connection(), Reservation.__table__
        sql.execute(update(table).where(table.c.id.in_(consumed)).values(status="consumed"))
        sql.execute(insert(Retirement.__table__), rows)
    return result


def release(order_ids: list[int]) -> None:
    """Return these orders' held serials to inventory, in the caller's transaction (after its pending
    changes, so the order's rows are written before its holds: the confirmation's lock order)."""
    db.session.flush()
    _release_holds(lock_holds(Reservation.order_id.in_(order_ids)))


def add_block(project_public_id: str, vintage_label: str, first_serial: int, last_serial: int,
              price_per_tonne: Decimal | int | str) -> SerialBlock:
    """A block of serials [first, last] at a price: refused unless the price is a positive, finite
    amount of whole fen and the range is a non-empty one of positive serials that overlaps no block
    (the database's exclusion constraint or trigger decides overlap)."""
    errors: dict[str, list[str]] = {}
    try:
        price = to_decimal(price_per_tonne)
        to_fen(price)  # whole fen (ValueError), and not too many digits for the fen (ArithmeticError)
    except (TypeError, ValueError, ArithmeticError):
        price = None
    if price is None or not 0 < price <= MAX_PRICE_PER_TONNE:
        errors["price_per_tonne"] = [(f"每吨价格需为 0.01 至 {MAX_PRICE_PER_TONNE} 元 / a price per tonne from 0.01 "
                                     f"to {MAX_PRICE_PER_TONNE} CNY, in whole fen")]
    if not 1 <= first_serial <= last_serial <= MAX_SERIAL:
        errors["serials"] = ["需 1 ≤ 起始 ≤ 结束 / 1 <= first <= last <= 2^63-1"]
    if not 1 <= len(vintage_label.strip()) <= 32:
        errors["vintage"] = ["年份标签为 1 至 32 个字符 / a vintage label of 1 to 32 characters"]
    if errors:
        raise ValidationError(details=errors)
    project = db.session.scalar(select(Project).where(Project.public_id == project_public_id))
    if project is None:
        raise ProjectNotFound(details={"project": [project_public_id]})
    vintage = db.session.scalar(select(Vintage).where(Vintage.project_id == project.id,
                                                      Vintage.label == vintage_label))
    if vintage is None:
        vintage = Vintage(project=project, label=vintage_label)
        db.session.add(vintage)
    block = SerialBlock(vintage=vintage, first_serial=first_serial, last_serial=last_serial,
                        price_per_tonne=price)
    db.session.add(block)
    try:
        db.session.commit()
    except DBAPIError as exc:  # IntegrityError on PostgreSQL's exclusion constraint, the trigger's abort on SQLite
        db.session.rollback()
        raise SerialsOverlap(details={"serials": [f"{first_serial}-{last_serial}"]}) from exc
    return block
