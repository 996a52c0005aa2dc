"""Invoice profiles (title and taxpayer id, checked), invoice requests (requested → issued |
rejected, every pair of states), the finance CSV (content, BOM, formula injection) and who may do
what: another organization's requests are not found; staff see and ask, owners decide."""
from __future__ import annotations

import csv
import io
import itertools
from decimal import Decimal

import pytest
from sqlalchemy import select

from carbon.core.db import db
from carbon.invoices import service as invoices
from carbon.invoices import taxid
from carbon.invoices.models import InvoiceRequest
from carbon.invoices.states import INVOICE_TRANSITIONS, InvoiceStatus, InvoiceTransitionRefused, move
from tests.console.conftest import PASSWORD, csrf_of, organization, sign_in
from tests.invoices.conftest import organization_paid_order
from tests.payments.conftest import seed_project

VALID_USCC = "91350100M000100Y43"  # a unified social credit code with a correct check character


@pytest.mark.parametrize("value", [VALID_USCC, "91110000100003962" + taxid.check_character("91110000100003962"),
                                   "110105123456789", "4403001234567890123X"])
def test_taxpayer_ids_that_pass(value):
    assert taxid.problem(taxid.normalize(value)) is None


@pytest.mark.parametrize("value, says", [
    ("91350100M000100Y44", "校验位"),  # wrong check character
    ("91350100M000100I43", "格式"),  # I is not in the code's alphabet
    ("1234567890", "15、18 或 20"), ("9135010", "15、18 或 20"), ("", "15、18 或 20"),
    ("11010512345678*", "数字和大写字母"),
])
def test_taxpayer_ids_that_fail_say_why(value, says):
    assert says in taxid.problem(taxid.normalize(value))


def test_a_typed_code_is_normalized():
    assert taxid.normalize(" 9135 0100-m000100y43 ") == VALID_USCC


@pytest.mark.parametrize("current, new", list(itertools.product(list(InvoiceStatus), repeat=2)))
def test_every_pair_of_request_states(current, new):
    request = InvoiceRequest(status=current)
    if new in INVOICE_TRANSITIONS[current]:
        move(request, INVOICE_TRANSITIONS, new)
        assert request.status == new
    else:
        with pytest.raises(InvoiceTransitionRefused) as refused:
            move(request, INVOICE_TRANSITIONS, new)
        assert request.status == current and refused.value.http_status == 409
        assert refused.value.details == {"status": [f"{current} → {new}"]}


def test_the_table_allows_exactly_these_moves():
    allowed = {(a, b) for a, targets in INVOICE_TRANSITIONS.items() for b in targets}
    assert allowed == {("requested", "issued"), ("requested", "rejected"), ("rejected", "requested")}


def _member(app, owner_email: str, email: str, role: str = "staff") -> None:
    from carbon.organizers import service as organizers
    from carbon.organizers.models import Organizer

    with app.app_context():
        owner = db.session.scalar(select(Organizer).where(Organizer.email == owner_email))
        organizers.add_member(owner.organization, email=email, password=PASSWORD, display_name="员工", role=role)


def _org_id(app, email: str) -> str:
    from carbon.organizers.models import Organizer

    with app.app_context():
        return db.session.scalar(select(Organizer).where(Organizer.email == email)).organization.public_id


def _post(client, path: str, page: str = "/console/invoices", **data):
    return client.post(path, data={"csrf_token": csrf_of(client.get(page)), **data}, follow_redirects=True)


def test_the_invoice_profile_is_checked_and_only_owners_change_it(app, client, owner_a):
    page = "/console/invoices/profile"
    bad = client.post(page, data={"csrf_token": csrf_of(client.get(page)), "title": "甲",
                                  "tax_id": "91350100M000100Y44"})
    html = bad.get_data(as_text=True)
    assert bad.status_code == 200
    assert 'data-field="tax_id">统一社会信用代码校验位不正确' in html and 'data-field="title"' in html
    assert 'value="91350100M000100Y44"' in html  # what was typed stays in the form
    control = client.post(page, data={"csrf_token": csrf_of(client.get(page)), "title": "甲\x00公司",
                                      "tax_id": VALID_USCC})
    assert 'data-field="title">含有不可保存的字符 U+0000' in control.get_data(as_text=True)
    with app.app_context():
        assert invoices.profile(_principal("a@forum.example")) is None
    saved = client.post(page, data={"csrf_token": csrf_of(client.get(page)), "title": " 甲组委会 有限公司 ",
                                    "tax_id": "9135 0100 m000 100y43"}, follow_redirects=True)
    assert "甲组委会 有限公司 · <code>91350100M000100Y43</code>" in saved.get_data(as_text=True)

    _member(app, "a@forum.example", "staff@forum.example")
    staff = app.test_client()
    assert sign_in(staff, "staff@forum.example").status_code == 302
    shown = staff.get(page).get_data(as_text=True)
    assert "仅限组织所有者修改" in shown and 'name="tax_id"' not in shown
    refused = staff.post(page, data={"csrf_token": csrf_of(staff.get("/console/invoices")), "title": "乙乙",
                                     "tax_id": VALID_USCC})
    assert refused.status_code == 403
    with app.app_context():
        assert invoices.profile(_principal("a@forum.example")).title == "甲组委会 有限公司"


def _principal(email: str):
    from carbon.organizers.models import Organizer
    from carbon.organizers.service import Principal

    member = db.session.scalar(select(Organizer).where(Organizer.email == email))
    return Principal(member.organization, member.role, organizer=member)


def test_a_request_goes_requested_then_issued_or_rejected_and_is_asked_again(app, client, owner_a):
    seed_project(app)
    organization(app, "乙组委会", "b@forum.example")
    with app.app_context():
        first = organization_paid_order(_org_id(app, "a@forum.example"), amount="120.00")
        second = organization_paid_order(_org_id(app, "a@forum.example"), amount="33.30")
        theirs = organization_paid_order(_org_id(app, "b@forum.example"))
    listed = client.get("/console/invoices").get_data(as_text=True)
    assert first in listed and second in listed and theirs not in listed

    missing = _post(client, "/console/invoices/request", order=first).get_data(as_text=True)
    assert "请先填写发票抬头和纳税人识别号" in missing
    _post(client, "/console/invoices/profile", "/console/invoices/profile", title="甲组委会有限公司", tax_id=VALID_USCC)
    made = _post(client, "/console/invoices/request", order=first).get_data(as_text=True)
    assert "已申请发票" in made
    assert _post(client, "/console/invoices/request", order=theirs).status_code == 404  # not ours
    assert "该订单已申请发票" in _post(client, "/console/invoices/request", order=first).get_data(as_text=True)
    with app.app_context():
        request = db.session.scalar(select(InvoiceRequest))
        assert (request.status, request.title, request.tax_id, request.amount) == (
            "requested", "甲组委会有限公司", VALID_USCC, Decimal("120.00"))
        assert request.requested_by.email == "a@forum.example" and request.decided_at is None
        request_id = request.public_id

    # the profile changes later: the request keeps what it was asked with
    _post(client, "/console/invoices/profile", "/console/invoices/profile", title="甲组委会（新）", tax_id=VALID_USCC)
    short = _post(client, f"/console/invoices/{request_id}/issue", fapiao_number="12").get_data(as_text=True)
    assert "发票号码为 8-20 位数字或字母" in short
    issued = _post(client, f"/console/invoices/{request_id}/issue", fapiao_number="26512000000012345678")
    assert "已标记为已开具" in issued.get_data(as_text=True)
    with app.app_context():
        request = db.session.scalar(select(InvoiceRequest).where(InvoiceRequest.public_id == request_id))
        assert (request.status, request.fapiao_number, request.title) == ("issued", "26512000000012345678",
                                                                          "甲组委会有限公司")
        assert request.issued_on is not None and request.decided_by.email == "a@forum.example"
    again = _post(client, f"/console/invoices/{request_id}/reject", reason="晚了").get_data(as_text=True)
    assert "发票申请的状态不允许此操作" in again  # issued is final

    _post(client, "/console/invoices/request", order=second)
    with app.app_context():
        second_request = db.session.scalar(select(InvoiceRequest).where(InvoiceRequest.amount == Decimal("33.30")))
    assert "需要理由" in _post(client, f"/console/invoices/{second_request.public_id}/reject",
                              reason=" ").get_data(as_text=True)
    _post(client, f"/console/invoices/{second_request.public_id}/reject", reason="抬头有误 / wrong title")
    with app.app_context():
        rejected = db.session.get(InvoiceRequest, second_request.id)
        assert (rejected.status, rejected.reason) == ("rejected", "抬头有误 / wrong title")
    assert second in client.get("/console/invoices").get_data(as_text=True)  # may be asked again
    _post(client, "/console/invoices/request", order=second)
    with app.app_context():
        asked = db.session.get(InvoiceRequest, second_request.id)
        assert (asked.status, asked.reason, asked.decided_at, asked.title) == ("requested", None, None, "甲组委会（新）")
        assert db.session.query(InvoiceRequest).count() == 2  # one request per order


def test_a_refunded_order_takes_no_new_request_and_its_request_says_refunded(app, client, owner_a):
    from carbon.checkout.models import Order

    seed_project(app)
    with app.app_context():
        refunded_later = organization_paid_order(_org_id(app, "a@forum.example"))
        refunded_first = organization_paid_order(_org_id(app, "a@forum.example"))
    _post(client, "/console/invoices/profile", "/console/invoices/profile", title="甲组委会有限公司", tax_id=VALID_USCC)
    _post(client, "/console/invoices/request", order=refunded_later)
    with app.app_context():
        for public_id in (refunded_later, refunded_first):  # what refund_order leaves on the order
            db.session.scalar(select(Order).where(Order.public_id == public_id)).status = "refunded"
        db.session.commit()
    listed = client.get("/console/invoices").get_data(as_text=True)
    assert "已退款 / refunded" in listed and refunded_first not in listed.split("发票申请")[0]
    refused = _post(client, "/console/invoices/request", order=refunded_first).get_data(as_text=True)
    assert "只有本组织已支付、未退款的订单可以申请发票" in refused
    rows = _csv(client)
    assert [(row["订单 / order"], row["已退款 / refunded"], row["订单状态 / order status"]) for row in rows] == [
        (refunded_later, "是 / yes", "refunded")]


def _csv(client) -> list[dict]:
    answer = client.get("/console/invoices.csv")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert answer.data.startswith("\ufeff".encode())  # BOM: Excel reads UTF-8
    return list(csv.DictReader(io.StringIO(answer.data.decode("utf-8-sig"))))


def test_the_finance_export_has_one_row_per_request_and_runs_no_formula(app, client, owner_a):
    seed_project(app)
    organization(app, "乙组委会", "b@forum.example")
    with app.app_context():
        orders = [organization_paid_order(_org_id(app, "a@forum.example"), amount=amount)
                  for amount in ("1234.50", "0.10", "60.00")]
    evil = '=HYPERLINK("http://x.example","点我")'
    _post(client, "/console/invoices/profile", "/console/invoices/profile", title=evil, tax_id=VALID_USCC)
    for order in orders:
        _post(client, "/console/invoices/request", order=order)
    with app.app_context():
        ids = [r.public_id for r in sorted(db.session.scalars(select(InvoiceRequest)), key=lambda r: r.id)]
    _post(client, f"/console/invoices/{ids[1]}/reject", reason="@SUM(1+1)")
    _post(client, f"/console/invoices/{ids[2]}/reject", reason='-1+2, "引号" 与逗号')
    rows = _csv(client)
    assert [row["申请 / request"] for row in rows] == ids
    assert [row["金额 / amount (CNY)"] for row in rows] == ["1234.50", "0.10", "60.00"]
    assert {row["发票抬头 / title"] for row in rows} == {"'" + evil}
    assert [row["驳回理由 / reason"] for row in rows] == ["", "'@SUM(1+1)", """'-1+2, "引号" 与逗号"""]
    assert [row["状态 / status"] for row in rows] == ["已申请 / Requested", "已驳回 / Rejected", "已驳回 / Rejected"]
    assert rows[0]["纳税人识别号 / tax id"] == VALID_USCC and rows[0]["申请人 / requested by"] == "a@forum.example"
    assert all(not value.startswith(("=", "+", "-", "@")) for row in rows for value in row.values())

    other = app.test_client()
    assert sign_in(other, "b@forum.example").status_code == 302
    assert _csv(other) == []  # another organization's requests are invisible
    assert ids[0] not in other.get("/console/invoices").get_data(as_text=True)
    assert _post(other, f"/console/invoices/{ids[0]}/reject", reason="x").status_code == 404
    assert _post(other, f"/console/invoices/{ids[0]}/issue", fapiao_number="12345678").status_code == 404


def test_staff_see_ask_and_export_but_owners_decide(app, client, owner_a):
    seed_project(app)
    with app.app_context():
        order = organization_paid_order(_org_id(app, "a@forum.example"))
    _post(client, "/console/invoices/profile", "/console/invoices/profile", title="甲组委会有限公司", tax_id=VALID_USCC)
    _member(app, "a@forum.example", "staff@forum.example")
    staff = app.test_client()
    assert sign_in(staff, "staff@forum.example").status_code == 302
    assert "已申请发票" in _post(staff, "/console/invoices/request", order=order).get_data(as_text=True)
    with app.app_context():
        request = db.session.scalar(select(InvoiceRequest))
        assert request.requested_by.email == "staff@forum.example"
    page = staff.get("/console/invoices").get_data(as_text=True)
    assert request.public_id in page and "/issue" not in page and "/reject" not in page
    assert len(_csv(staff)) == 1
    for action, data in (("issue", {"fapiao_number": "12345678"}), ("reject", {"reason": "no"})):
        refused = staff.post(f"/console/invoices/{request.public_id}/{action}",
                             data={"csrf_token": csrf_of(staff.get("/console/invoices")), **data})
        assert refused.status_code == 403
    assert client.post(f"/console/invoices/{request.public_id}/issue", data={"fapiao_number": "12345678"}
                       ).status_code == 400  # no CSRF token
    with app.app_context():
        assert db.session.get(InvoiceRequest, request.id).status == "requested"


def test_a_request_whose_order_was_refunded_meanwhile_cannot_be_marked_issued(app, client, owner_a):
    """A fapiao is for money kept: once the order is refunded its open request can only be rejected."""
    from carbon.checkout.models import Order

    seed_project(app)
    with app.app_context():
        order_id = organization_paid_order(_org_id(app, "a@forum.example"))
    _post(client, "/console/invoices/profile", "/console/invoices/profile", title="甲组委会有限公司", tax_id=VALID_USCC)
    _post(client, "/console/invoices/request", order=order_id)
    with app.app_context():
        db.session.scalar(select(Order).where(Order.public_id == order_id)).status = "refunded"  # as refund_order leaves it
        db.session.commit()
        request_id = db.session.scalar(select(InvoiceRequest.public_id))
    _post(client, f"/console/invoices/{request_id}/issue", fapiao_number="26512000000012345678")
    with app.app_context():
        assert db.session.scalar(select(InvoiceRequest.status)) == "requested"
    _post(client, f"/console/invoices/{request_id}/reject", reason="订单已退款 / refunded")
    with app.app_context():
        assert db.session.scalar(select(InvoiceRequest.status)) == "rejected"
