from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from schemas.common import Kilograms, Money, Text
from schemas.footprint import Quantity
from schemas.scenes import ProjectBrief


class OrderIn(Schema):
    footprint_id = Text(validate=validate.Length(1, 32),
                        metadata={"description": "buy what this footprint needs (rounded up)"})
    kg = Quantity(maximum=100_000, places=3, metadata={"description": "or buy this many kg"})
    project_id = Text(validate=validate.Length(1, 32),
                      metadata={"description": "default: the scene's first project, else the first"})
    scene = Text(validate=validate.Length(1, 200), metadata={"description": "the scanned scene, if any"})
    beneficiary_name = Text(validate=validate.Length(1, 64))

    @validates_schema
    def _footprint_or_kg(self, data, **kwargs):
        if bool(data.get("footprint_id")) == (data.get("kg") is not None):
            raise ValidationError("需提供 footprint_id 或 kg 之一 / Give exactly one of footprint_id, kg", "kg")


class PaymentOut(Schema):
    out_trade_no = fields.String()
    status = fields.String()
    amount = Money()
    transaction_id = fields.String(allow_none=True)
    confirmed_at = fields.DateTime(allow_none=True)


class OrderOut(Schema):
    id = fields.String(attribute="public_id")
    status = fields.String()
    units = fields.Integer()
    kg = Kilograms()
    amount = Money()
    currency = fields.String()
    project = fields.Nested(ProjectBrief)
    beneficiary_name = fields.String()
    purpose = fields.String()
    created_at = fields.DateTime()
    expires_at = fields.DateTime()
    paid_at = fields.DateTime(allow_none=True)
    payments = fields.List(fields.Nested(PaymentOut))


class RequestPayment(Schema):
    appId = fields.String()
    timeStamp = fields.String()
    nonceStr = fields.String()
    package = fields.String()
    signType = fields.String()
    paySign = fields.String()


class OrderCreatedOut(Schema):
    order = fields.Nested(OrderOut)
    request_payment = fields.Nested(RequestPayment, metadata={"description": "pass to wx.requestPayment"})


class OrderStatusOut(Schema):
    id = fields.String()
    status = fields.String(metadata={"description": "awaiting_payment, paid, fulfilled (certificate issued), "
                                                    "canceled, expired, refunded…"})
    paid_at = fields.DateTime(allow_none=True)
    certificate_number = fields.String(allow_none=True, metadata={
        "description": "once fulfilled: the certificate, at GET /certificates/{number}"})


class OrdersOut(Schema):
    items = fields.List(fields.Nested(OrderOut))


class WeChatPayAnswer(Schema):
    """What the notify route answers WeChat Pay when it does not take a notification (WeChat Pay's
    format, not the error envelope)."""

    code = fields.String(required=True, metadata={"example": "FAIL"})
    message = fields.String(required=True)
