"""Certificates: issued once per paid order (an ``order.paid`` handler), revoked by a refund (an
``order.refunded`` handler), each an entry of one hash chain that anyone can recheck.

An entry's record is canonical JSON (RFC 8785) with numbers as strings and times in UTC; its hash
is SHA-256 over those bytes and covers ``prev``, the previous entry's hash. Appending locks the
chain head and the year's counter in the handler's transaction, so numbers have no gaps and the
chain never forks (CERTIFICATES.md). The record holds no name: ``beneficiary_sha256`` commits to it
with a salt kept on the certificate row, erased with the account (decision 0014)."""
from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC

import rfc8785
from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from carbon import jobs
from carbon.accounts.models import User
from carbon.certificates import cards
from carbon.certificates.models import Certificate, CertificateCounter, CertificateImage, ChainEntry, ChainHead
from carbon.checkout.models import Order
from carbon.checkout.orders import locked_order
from carbon.checkout.states import ORDER_TRANSITIONS, OrderStatus, move
from carbon.core import extensions as ext
from carbon.core.clock import CHINA_TZ, utcnow
from carbon.core.db import db, on_postgresql
from carbon.core.errors import Conflict, DomainError, NotFound
from carbon.credits.models import Retirement
from carbon.footprint.models import Footprint
from carbon.rendering import qr_png
from carbon.scenes.models import Scene
from wechat.errors import SubscriptionRefused

GENESIS = "0" * 64
ERASED_NAME = "已注销用户"  # what a certificate shows once its beneficiary's account is deleted


class CertificateNotFound(NotFound):
    code = "certificate.not_found"
    message = "未找到该证书 / Certificate not found"


class RecordChanged(Conflict):
    code = "certificate.record_changed"
    message = "证书记录已被改动，不予出图 / The certificate's record was changed: no picture is drawn of it"


def digest(record: dict) -> str:
    return hashlib.sha256(rfc8785.dumps(record)).hexdigest()


def name_commitment(salt: str, name: str) -> str:
    """What an issue record holds of the beneficiary: SHA-256 of the salt's bytes then the UTF-8 name, hex."""
    return hashlib.sha256(bytes.fromhex(salt) + name.encode()).hexdigest()


def utc_text(moment) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@jobs.handles("order.paid")
def issue_for_paid_order(payload: dict) -> None:
    """Issue the order's certificate (once) and move the order to ``fulfilled``."""
    order = locked_order(payload["order"])
    if order is None or order.status != OrderStatus.PAID:
        return  # refunded before its certificate was issued: nothing to certify
    if db.session.scalar(select(Certificate.id).where(Certificate.order_id == order.id)) is not None:
        return
    now = utcnow()
    head = _locked_head()
    number = _next_number(now.astimezone(CHINA_TZ).year)
    salt = secrets.token_hex(16)
    record = {"kind": "issue", "number": number, "beneficiary_sha256": name_commitment(salt, order.beneficiary_name),
              "kg": f"{order.kg:.3f}", "scene": _scene(order), "projects": _projects(order),
              "dataset_version": _dataset_version(order), "issued_at": utc_text(now), "prev": head.hash}
    event = _event_name(order)
    if event:
        record["event"] = event
    entry = _append(head, "issue", number, record)
    db.session.add(Certificate(number=number, order_id=order.id, user_id=order.user_id,
                               organization_id=order.organization_id, issue_seq=entry.seq, issued_at=now,
                               beneficiary_name=order.beneficiary_name, beneficiary_salt=salt))
    move(order, ORDER_TRANSITIONS, OrderStatus.FULFILLED)
    jobs.emit("certificate.issued", {"number": number})


@jobs.handles("certificate.issued")
def push_certificate_ready(payload: dict) -> None:
    """Tell the guest their certificate is ready, if they accepted the template (``wx.requestSubscribeMessage``).
    43101 (not accepted, or used up) is an outcome, recorded and not retried; other failures raise and
    the outbox retries them."""
    settings = ext.settings()
    certificate = db.session.scalar(select(Certificate).where(Certificate.number == payload["number"])
                                    .with_for_update())
    if certificate is None or certificate.push is not None or not settings.WECHAT_TEMPLATE_CERTIFICATE:
        return
    openid = db.session.scalar(select(User.openid).where(User.id == certificate.user_id, User.deleted_at.is_(None)))
    if openid is None:
        return  # the account was deleted: nobody to tell
    order = db.session.get(Order, certificate.order_id)
    record = json.loads(db.session.get(ChainEntry, certificate.issue_seq).record)
    title = (record["scene"] or {}).get("name") or "点点碳中和"
    try:
        ext.wechat().send_subscribe_message(
            openid, settings.WECHAT_TEMPLATE_CERTIFICATE, {
                "thing1": shorten(f"{title}荣誉证书", 20), "number2": record["kg"],
                "date3": certificate.issued_at.astimezone(CHINA_TZ).strftime("%Y年%m月%d日"),
                "amount4": f"¥{order.amount:.2f}", "character_string5": certificate.number},
            page=f"{settings.WECHAT_CERTIFICATE_PAGE}?no={certificate.number}")
        certificate.push = "sent"
    except SubscriptionRefused:
        certificate.push = "refused"


IMAGES = {"card": "image/jpeg", "poster": "image/png"}


def image(number: str, kind: str) -> CertificateImage:
    """The stored card or poster, rendered (and stored) if it is missing or shows something else now
    (a poster drawn with a stand-in QR code, WeChat's code unavailable then, is drawn again: at most
    once per process per ``PICTURES_SECONDS``, as ``picture`` keeps what it read).
    Pictures are drawn on their first request, not ahead (decision 0015, amended): a guest asks for
    the card a moment after the certificate appears, so a lane drawing it ahead saved that guest
    little, and under load it drew most cards a second time beside the guest's own request."""
    certificate, issued, _ = get(number)
    as_issued = stored_record(issued)
    record = shown_record(certificate, as_issued)
    etag = digest({"kind": kind, "record": record, "layout": cards.LAYOUT_VERSION})
    stored = db.session.scalar(select(CertificateImage).where(CertificateImage.number == number,
                                                              CertificateImage.kind == kind))
    if stored is not None and stored.etag == etag:
        return stored
    if digest(as_issued) != issued.hash:  # changed since it was issued: its claims are not drawn
        raise RecordChanged()
    if kind == "card":
        content = cards.render_card(record)
    else:
        code, from_wechat = _code_for(number)
        content = cards.render_poster(record, code)
        if not from_wechat:  # a QR code stands in: stored as not current, so drawn again on a later look
            etag = digest({"kind": kind, "record": record, "layout": cards.LAYOUT_VERSION, "code": "qr"})
    if stored is None:
        try:
            with db.session.begin_nested():  # two first looks (a guest, a friend it was shared with) may draw it at once
                stored = CertificateImage(number=number, kind=kind, etag=etag, media_type=IMAGES[kind],
                                          content=content)
                db.session.add(stored)
            return stored
        except IntegrityError:  # the other one stored it first: keep theirs, or replace it if it is stale
            stored = db.session.scalar(select(CertificateImage).where(CertificateImage.number == number,
                                                                      CertificateImage.kind == kind))
            if stored.etag == etag:
                return stored
    stored.etag, stored.media_type, stored.content = etag, IMAGES[kind], content
    db.session.flush()
    return stored


PICTURES_BYTES = 4 * 1024 * 1024  # per process; see PictureCache
PICTURES_SECONDS = 300  # a deleted account's name leaves every process's pictures within this


class PictureCache:
    """The pictures this process read lately, the least recently read dropped first once they hold
    more than ``limit`` bytes. Bounded by bytes, not by count, because the count does not bound the
    memory: a card is ~105 KB and a poster ~80 KB today, and 512 of them were up to ~55 MB in each
    gunicorn worker, whose aim is 150 MB (issue 14; one that has drawn cards is at ~145 MB without
    them, docs/PERFORMANCE.md "Memory per process"). What the cache is for is the same few pictures
    read again and again (a shared card opened by the friends it reached, a guest reopening theirs):
    4 MB holds the last ~40 cards or ~50 posters, enough for that. A picture no longer kept costs
    the few indexed reads of ``image()``; it is never drawn again for that."""

    def __init__(self, limit: int = PICTURES_BYTES) -> None:
        self.limit, self.size = limit, 0
        self._kept: OrderedDict[tuple[str, str], tuple[str, str, bytes, float]] = OrderedDict()
        self._lock = threading.Lock()  # a gthread worker's request threads share it

    def get(self, key: tuple[str, str]) -> tuple[str, str, bytes, float] | None:
        with self._lock:
            found = self._kept.get(key)
            if found is not None:
                self._kept.move_to_end(key)
            return found

    def put(self, key: tuple[str, str], value: tuple[str, str, bytes, float]) -> None:
        with self._lock:
            self._drop(key)
            self._kept[key] = value
            self.size += len(value[2])
            while self.size > self.limit and len(self._kept) > 1:
                self._drop(next(iter(self._kept)))

    def pop(self, key: tuple[str, str], default=None):
        with self._lock:
            return self._drop(key) or default

    def _drop(self, key: tuple[str, str]) -> tuple[str, str, bytes, float] | None:
        found = self._kept.pop(key, None)
        if found is not None:
            self.size -= len(found[2])
        return found

    def __len__(self) -> int:
        return len(self._kept)


def picture(number: str, kind: str) -> tuple[str, str, bytes]:
    """(etag, media type, bytes) of a card or poster, kept by this app for a few minutes once read: a
    certificate's pictures change only when its beneficiary's account is deleted (a new layout comes
    with a new deploy, hence a new process)."""
    kept = current_app.extensions.setdefault("diandian.certificate_pictures", PictureCache())
    found = kept.get((number, kind))
    if found is None or found[3] <= time.monotonic():
        stored = image(number, kind)
        found = (stored.etag, stored.media_type, stored.content, time.monotonic() + PICTURES_SECONDS)
        db.session.commit()  # rendered now if it was missing: keep it (read first: the commit expires the row)
        kept.put((number, kind), found)
    return found[:3]


def _code_for(number: str) -> tuple[bytes, bool]:
    """The mini-program code opening the certificate (scene = its number), or a QR code of its page;
    and whether it is WeChat's code."""
    settings = ext.settings()
    try:
        return ext.wechat().wxa_code(number, page=settings.WECHAT_CERTIFICATE_PAGE, width=430), True
    except DomainError:  # WeChat unreachable, refusing (45009 in a burst), or the page not yet published
        return qr_png(f"{settings.PUBLIC_BASE_URL.rstrip('/')}/c/{number}"), False


def shorten(text: str, limit: int) -> str:
    """At most ``limit`` characters (WeChat's ``thing`` limit is 20), cut with an ellipsis."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


# What a revocation entry says of its cause. Never the reason an operator typed for the refund: the
# chain is public and append-only, so anything written there (a guest's name or number typed into
# the reason) could never be erased (decision 0014); that reason stays with the refund, in private.
REFUNDED = "订单已退款 / the order was refunded"


@jobs.handles("order.refunded")
def revoke_for_refunded_order(payload: dict) -> None:
    """Append a revocation entry for the order's certificate (once); the certificate stays, marked revoked."""
    order = locked_order(payload["order"])
    certificate = None if order is None else db.session.scalar(
        select(Certificate).where(Certificate.order_id == order.id).with_for_update())
    if certificate is None or certificate.revoke_seq is not None:
        return
    head = _locked_head()
    record = {"kind": "revoke", "number": certificate.number, "reason": REFUNDED,
              "revoked_at": utc_text(utcnow()), "prev": head.hash}
    certificate.revoke_seq = _append(head, "revoke", certificate.number, record).seq


def _locked_head() -> ChainHead:
    return _locked_row(ChainHead, ChainHead.id == 1, {"id": 1, "seq": 0, "hash": GENESIS})


def _next_number(year: int) -> str:
    counter = _locked_row(CertificateCounter, CertificateCounter.year == year, {"year": year, "last": 0})
    counter.last += 1
    return f"DD-{year}-{counter.last:06d}"


def _locked_row(model, where, first: dict):
    """The row, locked (``FOR UPDATE``); created first if this is its first use (a year's first
    certificate, the chain's first entry), whoever else creates it at the same moment."""
    locked = select(model).where(where).with_for_update().execution_options(populate_existing=True)
    row = db.session.scalar(locked)
    if row is None:
        dialect = postgresql if on_postgresql() else sqlite
        db.session.execute(dialect.insert(model).values(**first).on_conflict_do_nothing())
        row = db.session.scalar(locked)
    return row


def _append(head: ChainHead, kind: str, number: str, record: dict) -> ChainEntry:
    entry = ChainEntry(seq=head.seq + 1, kind=kind, number=number, record=rfc8785.dumps(record).decode(),
                       hash=digest(record))
    db.session.add(entry)
    head.seq, head.hash = entry.seq, entry.hash
    db.session.flush()
    return entry


def _scene(order: Order) -> dict | None:
    scene = db.session.get(Scene, order.scene_id) if order.scene_id else None
    if scene is None:
        return None
    day = scene.starts_on or order.paid_at.astimezone(CHINA_TZ).date()
    return {"id": scene.public_id, "name": scene.name_zh, "date": day.isoformat()}


def _projects(order: Order) -> list[dict]:
    retirements = db.session.scalars(select(Retirement).where(Retirement.order_id == order.id)
                                     .order_by(Retirement.first_serial)).all()
    project = order.project
    return [{"id": project.public_id, "name": project.name_zh, "registry": project.registry_name,
             "retirements": [{"id": r.public_id, "vintage": r.vintage_label,
                              "serials": [str(r.first_serial), str(r.last_serial)], "kg": f"{r.kg:.3f}"}
                             for r in retirements]}]


def _event_name(order: Order) -> str | None:
    """The event an organization's order neutralized, as its host footprint names it (a company
    without scenes buys for a named event)."""
    if order.organization_id is None or not order.footprint_id:
        return None
    request = db.session.scalar(select(Footprint.request).where(Footprint.id == order.footprint_id)) or {}
    return request.get("event_name") or None


def organization_certificates(organization_id: int, limit: int = 100) -> list[Certificate]:
    return list(db.session.scalars(select(Certificate).where(Certificate.organization_id == organization_id)
                                   .order_by(Certificate.id.desc()).limit(limit)))


def _dataset_version(order: Order) -> str | None:
    return db.session.scalar(select(Footprint.dataset_version).where(Footprint.id == order.footprint_id)) \
        if order.footprint_id else None


# --- reading and checking -----------------------------------------------------------------------

def get(number: str) -> tuple[Certificate, ChainEntry, ChainEntry | None]:
    certificate = db.session.scalar(select(Certificate).where(Certificate.number == number))
    if certificate is None:
        raise CertificateNotFound()
    issued = db.session.get(ChainEntry, certificate.issue_seq)
    revoked = db.session.get(ChainEntry, certificate.revoke_seq) if certificate.revoke_seq else None
    return certificate, issued, revoked


def stored_record(entry: ChainEntry) -> dict:
    """An entry's record as stored; ``{}`` when it is no longer a JSON object (it was changed): every
    check of it then fails, and what it showed is not shown."""
    return _parsed(entry.record)


def _parsed(text: str) -> dict:
    try:
        value = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def mine(user_id: int) -> list[Certificate]:
    return list(db.session.scalars(select(Certificate).where(Certificate.user_id == user_id)
                                   .order_by(Certificate.id.desc()).limit(100)))


def shown_record(certificate: Certificate, record: dict) -> dict:
    """The record as the pictures show it: with the beneficiary's name, or 已注销用户, and whether it
    was revoked (a revocation changes the pictures, so their ETag)."""
    shown = {**record, "beneficiary": certificate.beneficiary_name or ERASED_NAME}
    if certificate.revoke_seq is not None:
        shown["revoked"] = True
    return shown


def _public_record(certificate: Certificate, record: dict) -> dict:
    """The record as issued; only a record from before decision 0014 (it holds the name itself) of an
    erased beneficiary has its name masked, so that it no longer hashes to its hash."""
    if "beneficiary" in record and certificate.beneficiary_name is None:
        return {**record, "beneficiary": ERASED_NAME}
    return record


def _name_check(certificate: Certificate, record: dict) -> bool | None:
    """Whether the name shown is the one the record commits to; None once erased (nothing to check)."""
    if certificate.beneficiary_name is None:
        return None
    if "beneficiary_sha256" in record:
        return certificate.beneficiary_salt is not None and \
            name_commitment(certificate.beneficiary_salt, certificate.beneficiary_name) == record["beneficiary_sha256"]
    return record.get("beneficiary") == certificate.beneficiary_name


def erase_beneficiary_names(user_id: int) -> list[str]:
    """Forget the name (and its salt) on every certificate of ``user_id``: they show 已注销用户 from now
    on and their pictures are drawn again; the chain is untouched. Returns their numbers."""
    certificates = list(db.session.scalars(select(Certificate).where(Certificate.user_id == user_id)
                                           .with_for_update()))
    for certificate in certificates:
        certificate.beneficiary_name = certificate.beneficiary_salt = None
    numbers = [certificate.number for certificate in certificates]
    if numbers:
        db.session.execute(delete(CertificateImage).where(CertificateImage.number.in_(numbers)))
        kept = current_app.extensions.get("diandian.certificate_pictures")  # other processes: PICTURES_SECONDS
        for number in numbers if kept is not None else ():
            for kind in IMAGES:
                kept.pop((number, kind))
    return numbers


def view(number: str, *, viewer_id: int | None) -> dict:
    """The certificate as shown: the public record to anyone (with the name and the salt that let
    anyone check it against ``beneficiary_sha256``), plus the order to its owner."""
    certificate, issued, revoked = get(number)
    shown = {"number": number, "record": _public_record(certificate, stored_record(issued)),
             "hash": issued.hash, "status": "revoked" if revoked else "valid",
             "revocation": stored_record(revoked) if revoked else None,
             "beneficiary": certificate.beneficiary_name or ERASED_NAME,
             "beneficiary_salt": certificate.beneficiary_salt}
    if viewer_id is not None and viewer_id == certificate.user_id:  # (an organization's has no user)
        order = db.session.get(Order, certificate.order_id)
        shown.update(order_id=order.public_id, amount=order.amount, push=certificate.push)
    return shown


def verify(number: str) -> dict:
    """Each check on its own: the record hashes to its hash, it links to the entry before and the
    entry after links to it (there is one unless the entry is the head), its serial ranges are the
    retirements the database holds, (while the account exists) the name shown is the one it commits
    to, and (once revoked) the revocation entry hashes to its hash and is linked on both sides."""
    certificate, issued, revoked = get(number)
    before = db.session.get(ChainEntry, issued.seq - 1)
    head = db.session.scalar(select(ChainHead.seq).where(ChainHead.id == 1)) or 0  # read before the next
    after = db.session.get(ChainEntry, issued.seq + 1)  # entry: one appended meanwhile is then seen too
    record = stored_record(issued)
    held = {r.public_id: r for r in db.session.scalars(select(Retirement).where(
        Retirement.order_id == certificate.order_id))}
    claimed = _claimed_serials(record)
    checks = {
        "hash": digest(record) == issued.hash,
        "previous_link": record.get("prev") == (before.hash if before else GENESIS) and
        (before is not None or issued.seq == 1),
        "next_link": stored_record(after).get("prev") == issued.hash if after else issued.seq >= head,
        "serials": claimed is not None and set(claimed) == set(held) and all(
            claimed[key] == [str(r.first_serial), str(r.last_serial)] for key, r in held.items()),
    }
    named = _name_check(certificate, record)
    if named is not None:
        checks["beneficiary"] = named
    if revoked is not None:
        revocation, previous = stored_record(revoked), db.session.get(ChainEntry, revoked.seq - 1)
        following = db.session.get(ChainEntry, revoked.seq + 1)
        checks["revocation"] = digest(revocation) == revoked.hash and revocation.get("number") == number and \
            previous is not None and revocation.get("prev") == previous.hash and \
            (stored_record(following).get("prev") == revoked.hash if following else revoked.seq >= head)
    return {"number": number, "valid": all(checks.values()) and revoked is None, "checks": checks,
            "status": "revoked" if revoked else "valid", "hash": issued.hash}


def _claimed_serials(record: dict) -> dict | None:
    """The serial ranges a record claims, by retirement id; None when it no longer has the shape it
    was issued with (it was changed): the serials check then fails, it does not crash."""
    try:
        return {item["id"]: item["serials"] for project in record.get("projects", []) for item in project["retirements"]}
    except (KeyError, TypeError, AttributeError):
        return None


CHAIN_PAGE = 500  # entries per read of the chain export


def chain() -> Iterator[str]:
    """The whole chain as JSON lines, in order: ``{"seq", "record", "hash"}`` (record as canonical text).
    Read in pages by ``seq`` (each a short query, no transaction held open for the whole export; the
    chain only grows at its end, so the pages join up). The first page is read here, not at the first
    line: a database that is away fails the caller (a 503 in the envelope) before the answer begins."""
    return _chain_lines(_chain_page(after=0))


def _chain_lines(page: list[tuple[int, str, str]]) -> Iterator[str]:
    while page:
        for seq, record, hash_ in page:
            yield json.dumps({"seq": seq, "record": record, "hash": hash_}, ensure_ascii=False) + "\n"
        page = _chain_page(after=page[-1][0]) if len(page) == CHAIN_PAGE else []


def _chain_page(after: int) -> list[tuple[int, str, str]]:
    return db.session.execute(select(ChainEntry.seq, ChainEntry.record, ChainEntry.hash).where(
        ChainEntry.seq > after).order_by(ChainEntry.seq).limit(CHAIN_PAGE)).all()


def check_chain(lines) -> str | None:
    """The first break in an exported chain, or None: every hash recomputed, every link followed."""
    prev = GENESIS
    for seq, line in enumerate(lines, start=1):
        entry = json.loads(line)
        record = _parsed(entry["record"])
        if entry["seq"] != seq:
            return f"entry {entry['seq']} where entry {seq} should be: one is missing or out of order"
        if digest(record) != entry["hash"]:
            return f"entry {seq} ({record.get('number')}): hash does not match its record"
        if record.get("prev") != prev:
            return f"entry {seq} ({record.get('number')}): does not link to entry {seq - 1}"
        prev = entry["hash"]
    return None
