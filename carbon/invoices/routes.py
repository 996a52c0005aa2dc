"""The organizer API's receipts and invoices (the console's pages do the same, decision 0017): an
organization's own order's receipt, the invoice profile, the requests, finance's outcome and the
CSV export. An API key acts with its role and names no member."""
from __future__ import annotations

from flask import Response

from carbon.checkout import purchases
from carbon.core.errors import NotFound
from carbon.core.openapi import Blueprint, answers
from carbon.invoices import service
from carbon.organizers.auth import current_principal, organizer_only
from schemas.invoices import (
    InvoiceIssueIn,
    InvoiceProfileIn,
    InvoiceProfileOut,
    InvoiceRejectIn,
    InvoiceRequestIn,
    InvoiceRequestOut,
    InvoiceRequestsOut,
    InvoiceRequestsQuery,
)

blp = Blueprint("admin_invoices", __name__, url_prefix="/api/v1/admin",
                description="组织者：收据、发票信息与发票申请 / Organizers: receipts, invoice details, fapiao requests")


class NoInvoiceProfile(NotFound):
    code = "invoice.profile_not_found"
    message = "尚未填写发票信息 / No invoice details recorded yet"


@blp.route("/purchases/<string:order_id>/receipt.pdf", methods=["GET"])
@answers(409)  # order.not_paid
@blp.response(200, content_type="application/pdf", description="the receipt, one A4 page")
@blp.doc(responses={"200": {"description": "the receipt, one A4 page", "content": {
    "application/pdf": {"schema": {"type": "string", "format": "binary"}}}}})
@organizer_only
def purchase_receipt(order_id):
    """The receipt of one of the organization's own paid orders (PDF, Chinese first)."""
    order = purchases.order_of(current_principal(), order_id)
    return Response(service.receipt_pdf(order), mimetype="application/pdf", headers={
        "Content-Disposition": f'inline; filename="receipt-{order.public_id}.pdf"'})


@blp.route("/invoice-profile", methods=["GET"])
@answers(404)  # none recorded yet
@blp.response(200, InvoiceProfileOut)
@organizer_only
def get_profile():
    found = service.profile(current_principal())
    if found is None:
        raise NoInvoiceProfile()
    return found


@blp.route("/invoice-profile", methods=["PUT"])
@answers(403)
@blp.arguments(InvoiceProfileIn)
@blp.response(200, InvoiceProfileOut)
@organizer_only
def put_profile(body):
    """Record the invoice title and taxpayer id (owners only); 422 names the field."""
    return service.save_profile(current_principal(), body["title"], body["tax_id"])


@blp.route("/invoice-requests", methods=["GET"])
@blp.arguments(InvoiceRequestsQuery, location="query")
@blp.response(200, InvoiceRequestsOut)
@organizer_only
def list_requests(query):
    return {"items": service.requests(current_principal(), query["status"])}


@blp.route("/invoice-requests", methods=["POST"])
@answers(404, 409)  # not the organization's order; no profile, already requested, not paid or refunded
@blp.arguments(InvoiceRequestIn)
@blp.response(201, InvoiceRequestOut)
@organizer_only
def create_request(body):
    """Ask for a fapiao for one of the organization's own paid orders (a rejected one is asked again)."""
    return service.request_invoice(current_principal(), body["order_id"])


@blp.route("/invoice-requests.csv", methods=["GET"])
@blp.response(200, content_type="text/csv", description="one row per request")
@blp.doc(responses={"200": {"description": "one row per request (UTF-8 with BOM)", "content": {
    "text/csv": {"schema": {"type": "string"}}}}})
@organizer_only
def export_requests():
    """Every request as CSV for the finance team (UTF-8 with BOM, amounts as text, formula-safe)."""
    principal = current_principal()
    return Response(service.export_csv(principal), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="invoice-requests-{principal.organization.public_id}.csv"'})


@blp.route("/invoice-requests/<string:request_id>/issue", methods=["POST"])
@answers(403, 409)  # owners only; not in the requested state
@blp.arguments(InvoiceIssueIn)
@blp.response(200, InvoiceRequestOut)
@organizer_only
def issue(body, request_id):
    """Record that finance made out the fapiao (owners only): requested → issued."""
    return service.mark_issued(current_principal(), request_id, body["fapiao_number"], body["issued_on"])


@blp.route("/invoice-requests/<string:request_id>/reject", methods=["POST"])
@answers(403, 409)
@blp.arguments(InvoiceRejectIn)
@blp.response(200, InvoiceRequestOut)
@organizer_only
def reject(body, request_id):
    """Record that finance will not make it out, with a reason (owners only): requested → rejected."""
    return service.reject(current_principal(), request_id, body["reason"])
