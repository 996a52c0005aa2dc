"""Leaderboards: guests ranked by the kilograms retired in their name, per scene and for everyone,
this week, this month and all time (weeks start on Monday, Asia/Shanghai).

The truth is the retirements of orders that still stand (paid or fulfilled: a refund takes the
kilograms back off). ``leaderboard_scores`` and, with Redis, one sorted set per board are indexes
derived from it: the ``order.paid`` and ``order.refunded`` handlers recompute the guest's grams on
the order's boards from the retirements and store them, and ``flask leaderboards rebuild``
recomputes whole boards. Reads use Redis when it is configured and up, else the table.

Ranks are shared by ties (1, 1, 3); tied guests are listed by user id, highest first.

Organizations that bought for a scene (issue 15) are ranked on their own board
(``organizations_top``), read straight from the retirements: a scene has a handful of them, so no
index is kept. A scene's progress counts what guests and organizations neutralized.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from sqlalchemy import BigInteger, Select, and_, bindparam, case, cast, func, select, true

from carbon import jobs
from carbon.accounts.models import User
from carbon.accounts.service import public_name
from carbon.checkout.models import Order
from carbon.checkout.states import OrderStatus
from carbon.core import extensions as ext
from carbon.core.clock import CHINA_TZ, as_utc, clock
from carbon.core.db import db
from carbon.core.errors import ValidationError
from carbon.core.units import grams_to_kg
from carbon.credits.models import Retirement
from carbon.footprint.models import Footprint
from carbon.leaderboards.index import RedisIndex, SqlIndex
from carbon.scenes import stats
from carbon.scenes.models import Scene

PERIODS = ("week", "month", "all")
STANDING = (OrderStatus.PAID, OrderStatus.FULFILLED)
KEPT_AFTER_PERIOD = timedelta(days=40)  # a past week's or month's board stays readable this long in Redis
_sql = SqlIndex()


@dataclass(frozen=True)
class Board:
    scene_id: int | None
    period: str
    label: str  # "all", "2026-W49", "2026-12"
    starts: datetime | None = None  # UTC, inclusive
    ends: datetime | None = None  # UTC, exclusive

    @property
    def key(self) -> str:
        return f"{f's{self.scene_id}' if self.scene_id else 'g'}:{self.period}:{self.label}"

    @property
    def starts_on(self) -> date | None:
        return self.starts.astimezone(CHINA_TZ).date() if self.starts else None

    @property
    def expires(self) -> datetime | None:
        return self.ends + KEPT_AFTER_PERIOD if self.ends else None


def board(scene_id: int | None, period: str, moment: datetime | None = None) -> Board:
    """The board of ``period`` that contains ``moment`` (now by default)."""
    if period == "all":
        return Board(scene_id, "all", "all")
    local = (moment or clock.now()).astimezone(CHINA_TZ).date()
    if period == "week":
        first = local - timedelta(days=local.weekday())
        following = first + timedelta(days=7)
        year, week, _ = first.isocalendar()
        label = f"{year}-W{week:02d}"
    elif period == "month":
        first = local.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        label = f"{first:%Y-%m}"
    else:
        raise ValidationError(details={"period": [f"需为 / Must be one of: {', '.join(PERIODS)}"]})
    return Board(scene_id, period, label, _midnight(first), _midnight(following))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), CHINA_TZ).astimezone(UTC)


def boards_of(scene_id: int | None, moment: datetime) -> list[Board]:
    """Every board a retirement at ``moment`` counts on: global and its scene's, for each period."""
    return [board(scope, period, moment) for scope in dict.fromkeys([None, scene_id]) for period in PERIODS]


# --- the truth ------------------------------------------------------------------------------

def retired_grams(board: Board, user_ids: list[int] | None = None) -> dict[int, int]:
    """Per guest, the grams retired in their name on ``board`` by orders that still stand."""
    return _retired_grams(board, Retirement.beneficiary_user_id, user_ids)


def retired_grams_of_organizations(board: Board) -> dict[int, int]:
    """Per organization, the grams retired in its name on ``board`` by orders that still stand."""
    return _retired_grams(board, Retirement.beneficiary_organization_id)


GRAMS = cast(func.round(Retirement.kg * 1000), BigInteger)  # a retirement's grams


def _on_board(board: Board, named: str = "") -> list:
    """Which retirements count on ``board`` (beyond their order still standing): its scene, its period.
    The scene and the bounds are bound parameters named with the prefix ``named`` (holding this
    board's values; ``_board_values`` gives another board's), so one statement can serve every
    board of the same shape."""
    conditions = []
    if board.scene_id is not None:
        conditions.append(Order.scene_id == bindparam(f"{named}scene", board.scene_id))
    if board.starts is not None:
        moment = Retirement.retired_at.type  # the column's own type (UTC), whatever the value's
        conditions += [Retirement.retired_at >= bindparam(f"{named}starts", board.starts, type_=moment),
                       Retirement.retired_at < bindparam(f"{named}ends", board.ends, type_=moment)]
    return conditions


def _board_values(board: Board, named: str) -> dict:
    return {f"{named}scene": board.scene_id, f"{named}starts": board.starts, f"{named}ends": board.ends}


def _standing():
    return select().select_from(Retirement).join(Order, Order.id == Retirement.order_id) \
        .where(Order.status.in_(STANDING))


def _retired_grams(board: Board, beneficiary, ids: list[int] | None = None) -> dict[int, int]:
    query = (_standing().add_columns(beneficiary, func.sum(GRAMS))
             .where(beneficiary.is_not(None), *_on_board(board)).group_by(beneficiary))
    if ids is not None:
        query = query.where(beneficiary.in_(ids))
    return {owner: int(total) for owner, total in db.session.execute(query)}


def retired_grams_of_guest(boards: list[Board], user_id: int) -> dict[Board, int]:
    """The guest's grams on each of ``boards``, in one read (what ``retired_grams`` says per board)."""
    shape = tuple((b.scene_id is not None, b.starts is not None) for b in boards)
    statement = _GUEST_GRAMS.get(shape)
    if statement is None:  # built once per shape of board list (a global and a scene's, per period)
        columns = [func.coalesce(func.sum(case((and_(true(), *_on_board(b, f"b{i}_")), GRAMS), else_=0)), 0)
                   for i, b in enumerate(boards)]
        statement = _GUEST_GRAMS[shape] = _standing().add_columns(*columns) \
            .where(Retirement.beneficiary_user_id == bindparam("user"))
    values = {"user": user_id}
    for i, b in enumerate(boards):
        values |= _board_values(b, f"b{i}_")
    row = db.session.execute(statement, values).one()
    return {b: int(grams) for b, grams in zip(boards, row, strict=True)}


_GUEST_GRAMS: dict[tuple, Select] = {}


# --- keeping the indexes ----------------------------------------------------------------------

@jobs.handles("order.paid")
@jobs.handles("order.refunded")
def refresh_for_order(payload: dict) -> None:
    """Recompute the order's guest on every board the order counts on (idempotent: it stores what
    the retirements say now, whatever ran before)."""
    found = _order_boards(payload["order"])
    if found is None:
        return
    user_id, boards = found
    fresh = {b: {user_id: grams} for b, grams in retired_grams_of_guest(boards, user_id).items()}
    _sql.put_many({b.key: scores for b, scores in fresh.items()})
    try:
        if not ext.redis_breaker().available():
            raise RedisConnectionError("known to be down")
        _mirror(fresh, replace=False)
    except RedisError as exc:
        ext.redis_breaker().failed(exc)
        jobs.emit("leaderboards.mirror", {"order": payload["order"]})


@jobs.handles("leaderboards.mirror")
def mirror_for_order(payload: dict) -> None:
    """Copy what the table holds for an order's guest to Redis, after Redis missed the refresh
    (raises while Redis is still down, so the outbox retries it with backoff)."""
    found = _order_boards(payload["order"])
    if found is not None:
        user_id, boards = found
        _mirror({b: {user_id: _sql.scores(b.key, [user_id]).get(user_id, 0)} for b in boards}, replace=False)


def _order_boards(order_public_id: str) -> tuple[int, list[Board]] | None:
    """The order's guest (locked: one refresh per guest at a time, so a slower one never stores
    older totals over newer ones) and the boards its retirements count on."""
    order = db.session.scalar(select(Order).where(Order.public_id == order_public_id))
    if order is not None and order.user_id is None:
        return None  # an organization's order: its board is read from the retirements (organizations_top)
    retired_at = db.session.scalar(select(func.min(Retirement.retired_at)).where(Retirement.order_id == order.id)) \
        if order else None
    if retired_at is None:
        return None
    # FOR NO KEY UPDATE: a confirmation inserting retirements for this guest (a foreign key check,
    # FOR KEY SHARE) is never blocked by it
    user_id = db.session.scalar(select(User.id).where(User.id == order.user_id).with_for_update(key_share=True))
    return user_id, boards_of(order.scene_id, as_utc(retired_at))


def rebuild(moment: datetime | None = None) -> dict[str, int]:
    """Recompute the current week's, month's and all-time boards, global and per scene, from the
    retirements, in both indexes. Returns the number of guests per board.

    It runs beside the handlers: the refreshes are locked out before the retirements are read and
    until both indexes are replaced (they wait, then store what the retirements say), so a payment
    or refund refreshed meanwhile is never overwritten with the older totals read before it."""
    _sql.lock_writers()
    scenes = db.session.scalars(select(Order.scene_id).where(Order.scene_id.is_not(None)).distinct()).all()
    boards = [board(scope, period, moment) for scope in [None, *sorted(scenes)] for period in PERIODS]
    fresh = {b: retired_grams(b) for b in boards}
    for b, scores in fresh.items():
        _sql.replace(b.key, scores)
    try:
        _mirror(fresh, replace=True)
    finally:
        db.session.commit()  # the table is rebuilt even when Redis is down (the error is still raised)
    return {b.key: len(scores) for b, scores in fresh.items()}


def _mirror(fresh: dict[Board, dict[int, int]], *, replace: bool) -> None:
    """Copy fresh scores to Redis, when Redis is configured (raises RedisError when it is down)."""
    client = ext.redis_client()
    if client is None:
        return
    redis_index = RedisIndex(client)
    if not replace:
        redis_index.put_many({b.key: (scores, b.expires) for b, scores in fresh.items()})
        return
    for b, scores in fresh.items():
        redis_index.replace(b.key, scores, b.expires)


# --- reading ---------------------------------------------------------------------------------

def _read(operation):
    """``operation(index)`` on Redis when it is configured and up, else on the table."""
    client = ext.redis_client()
    if client is None:
        return operation(_sql)
    return ext.redis_breaker().call(lambda: operation(RedisIndex(client)), lambda: operation(_sql))


def _ranked(rows: list[tuple[int, int]], position: int, first_rank: int) -> list[tuple[int, int, int]]:
    """(rank, user, grams) for consecutive rows starting at ``position`` (from 0) whose first row
    has ``first_rank``: a row tied with the one before shares its rank, else its rank is its place."""
    ranked: list[tuple[int, int, int]] = []
    for offset, (user, grams) in enumerate(rows):
        if not ranked:
            rank = first_rank
        elif grams == ranked[-1][2]:
            rank = ranked[-1][0]
        else:
            rank = position + offset + 1
        ranked.append((rank, user, grams))
    return ranked


def _entries(ranked: list[tuple[int, int, int]], viewer_id: int | None) -> list[dict]:
    names = {row.id: public_name(row) for row in db.session.execute(
        select(User.id, User.public_id, User.nickname, User.leaderboard_hidden)
        .where(User.id.in_([user for _, user, _ in ranked])))}
    return [{"rank": rank, "name": names.get(user, ""), "kg": grams_to_kg(grams), "me": user == viewer_id}
            for rank, user, grams in ranked]


def top(scene: Scene | None, period: str, limit: int = 20, viewer_id: int | None = None) -> dict:
    """The board's first ``limit`` guests, its size and total, and the scene's progress."""
    b = board(scene.id if scene else None, period)
    rows, size = _read(lambda index: (index.top(b.key, limit), index.size(b.key)))
    return {"board": {"scene": scene.public_id if scene else None, "period": period, "starts_on": b.starts_on,
                      "participants": size, "kind": "guests"},
            "entries": _entries(_ranked(rows, 0, 1), viewer_id),
            "progress": progress(scene) if scene else None}


def organizations_top(scene: Scene | None, period: str, limit: int = 20) -> dict:
    """The organizations that bought for the scene (or for anything), ranked apart from the guests,
    in the shape of ``top``; ties are listed by organization id, highest first."""
    from carbon.organizers.models import Organization

    b = board(scene.id if scene else None, period)
    scores = retired_grams_of_organizations(b)
    rows = sorted(scores.items(), key=lambda item: (-item[1], -item[0]))
    names = dict(db.session.execute(select(Organization.id, Organization.name)
                                    .where(Organization.id.in_([owner for owner, _ in rows[:limit]]))).all())
    entries = [{"rank": rank, "name": names.get(owner, ""), "kg": grams_to_kg(grams), "me": False}
               for rank, owner, grams in _ranked(rows[:limit], 0, 1)]
    return {"board": {"scene": scene.public_id if scene else None, "period": period, "starts_on": b.starts_on,
                      "participants": len(scores), "kind": "organizations"},
            "entries": entries, "progress": progress(scene) if scene else None}


def standing(scene: Scene | None, period: str, user_id: int, width: int = 2) -> dict:
    """The guest's rank and grams on the board with up to ``width`` neighbours above and below."""
    b = board(scene.id if scene else None, period)

    def read(index):
        grams = index.scores(b.key, [user_id]).get(user_id)
        if grams is None:
            return None
        position, above, below = index.around(b.key, user_id, grams, width)
        first = above[0][1] if above else grams
        return position - len(above), [*above, (user_id, grams), *below], index.count_above(b.key, first) + 1

    found = _read(read)
    if found is None:
        return {"rank": None, "kg": grams_to_kg(0), "above": [], "below": []}
    start, rows, first_rank = found
    entries = _entries(_ranked(rows, start, first_rank), user_id)
    mine = next(i for i, entry in enumerate(entries) if entry["me"])
    return {"rank": entries[mine]["rank"], "kg": entries[mine]["kg"], "above": entries[:mine],
            "below": entries[mine + 1:]}


def progress(scene: Scene) -> dict:
    """How neutral the scene is: kilograms its guests and organizations neutralized over its
    estimated footprint (expected attendance × the average footprint its guests calculated), and
    how many guests took part."""
    neutralized = int(stats.totals(scene.id)["grams_neutralized"])
    estimated = estimated_grams(scene)
    percent = None
    if estimated:
        percent = (Decimal(neutralized * 100) / estimated).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    participants = _read(lambda index: index.size(board(scene.id, "all").key))
    return {"neutralized_kg": grams_to_kg(neutralized),
            "estimated_kg": grams_to_kg(estimated) if estimated else None,
            "percent": percent, "participants": participants}


def estimated_grams(scene: Scene) -> int | None:
    """The scene's estimated footprint: its expected attendance at its guests' average footprint."""
    if not scene.expected_attendance:
        return None
    return attendees_grams(scene, scene.expected_attendance)


def attendees_grams(scene: Scene, attendees: int) -> int | None:
    """``attendees`` guests at the average footprint the scene's guests calculated (kind ``event``),
    to the gram; None while no guest has calculated one."""
    total, count = db.session.execute(
        select(func.coalesce(func.sum(Footprint.total_grams), 0), func.count())
        .where(Footprint.scene_id == scene.id, Footprint.kind == "event")).one()
    if not count:
        return None
    return int((Decimal(int(total)) * attendees / count).to_integral_value(ROUND_HALF_UP))
