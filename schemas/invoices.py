from __future__ import annotations

from marshmallow import Schema, fields, validate

from carbon.invoices.states import InvoiceStatus
from schemas.common import Money, Text


class InvoiceProfileIn(Schema):
    title = Text(required=True, validate=validate.Length(max=256), metadata={"description": "发票抬头 (2-128)"})
    tax_id = Text(required=True, validate=validate.Length(max=64), metadata={
        "description": "纳税人识别号: the 18-character unified social credit code (check character checked), or 15/20"})


class InvoiceProfileOut(Schema):
    title = fields.String()
    tax_id = fields.String()
    updated_at = fields.DateTime()


class InvoiceRequestIn(Schema):
    order_id = Text(required=True, validate=validate.Length(1, 32), metadata={
        "description": "one of the organization's own paid, unrefunded orders"})


class InvoiceIssueIn(Schema):
    fapiao_number = Text(required=True, validate=validate.Length(max=64), metadata={
        "description": "the fapiao's number: 8-20 digits or letters"})
    issued_on = fields.Date(load_default=None, metadata={"description": "not after today (China); default today"})


class InvoiceRejectIn(Schema):
    reason = Text(required=True, validate=validate.Length(max=400), metadata={"description": "1-200 characters"})


class InvoiceRequestsQuery(Schema):
    status = Text(load_default=None, validate=validate.OneOf(list(InvoiceStatus)))


class InvoiceRequestOut(Schema):
    id = fields.String(attribute="public_id")
    order_id = fields.Function(lambda r: r.order.public_id, metadata={"type": "string"})
    order_status = fields.Function(lambda r: r.order.status, metadata={"type": "string"})
    refunded = fields.Function(lambda r: r.order.status == "refunded", metadata={"type": "boolean"})
    title = fields.String()
    tax_id = fields.String()
    amount = Money()
    status = fields.String(metadata={"enum": list(InvoiceStatus)})
    fapiao_number = fields.String(allow_none=True)
    issued_on = fields.Date(allow_none=True)
    reason = fields.String(allow_none=True)
    requested_at = fields.DateTime()
    decided_at = fields.DateTime(allow_none=True)


class InvoiceRequestsOut(Schema):
    items = fields.List(fields.Nested(InvoiceRequestOut))
