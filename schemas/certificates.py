from __future__ import annotations

from marshmallow import Schema, fields

from schemas.common import Money


class CertificateOut(Schema):
    number = fields.String(metadata={"description": "e.g. DD-2026-000123, gap-free per year"})
    status = fields.String(metadata={"description": "valid | revoked"})
    hash = fields.String(metadata={"description": "SHA-256 (hex) of the record's RFC 8785 encoding"})
    record = fields.Dict(metadata={"description": "the chain entry as issued: number, beneficiary_sha256, kg, "
                                                  "scene, projects with registry, vintage and serial ranges, "
                                                  "dataset_version, issued_at (UTC), prev (the previous hash)"})
    beneficiary = fields.String(metadata={"description": "the name shown; 已注销用户 once the account was deleted"})
    beneficiary_salt = fields.String(allow_none=True, metadata={
        "description": "hex: sha256(bytes.fromhex(salt) + name.encode()) == record.beneficiary_sha256; "
                       "null once erased"})
    revocation = fields.Dict(allow_none=True, metadata={"description": "the revocation entry, when revoked"})
    order_id = fields.String(metadata={"description": "only for the owner (their token sent)"})
    amount = Money(metadata={"description": "only for the owner: what the order cost"})
    push = fields.String(allow_none=True, metadata={"description": "only for the owner: sent | refused | null"})


class CertificatesOut(Schema):
    items = fields.List(fields.Nested(CertificateOut))


class VerificationOut(Schema):
    number = fields.String()
    valid = fields.Boolean(metadata={"description": "every check passed and the certificate is not revoked"})
    status = fields.String()
    hash = fields.String()
    checks = fields.Dict(keys=fields.String(), values=fields.Boolean(),
                         metadata={"description": "hash, previous_link, next_link, serials, beneficiary "
                                                  "(the name against its commitment) while the account exists, "
                                                  "and revocation (its entry's hash and links) once revoked"})
