"""The DomainError hierarchy: every error the API reports has a stable dotted code.

Services raise these; the app turns them into the one JSON error envelope
``{"error": {"code", "message", "details", "request_id"}}``.
"""
from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error the API reports on purpose."""

    http_status = 400
    code = "bad_request"
    message = "请求无效 / Bad request"

    def __init__(self, message: str | None = None, *, code: str | None = None,
                 details: dict[str, Any] | None = None, http_status: int | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message
        if code:
            self.code = code
        if http_status:
            self.http_status = http_status
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class ValidationError(DomainError):
    http_status = 422
    code = "validation_error"
    message = "输入有误 / Invalid input"


class AuthenticationError(DomainError):
    http_status = 401
    code = "auth.unauthenticated"
    message = "请先登录 / Login required"


class PermissionDenied(DomainError):
    http_status = 403
    code = "auth.forbidden"
    message = "无权访问 / Not allowed"


class NotFound(DomainError):
    http_status = 404
    code = "not_found"
    message = "未找到 / Not found"


class Gone(DomainError):
    http_status = 410
    code = "gone"
    message = "已失效 / No longer available"


class Conflict(DomainError):
    http_status = 409
    code = "conflict"
    message = "状态冲突 / Conflict"


class RateLimited(DomainError):
    http_status = 429
    code = "rate_limited"
    message = "请求过于频繁，请稍后再试 / Too many requests, try again later"


class UpstreamError(DomainError):
    """A service we depend on (WeChat, WeChat Pay) failed; not the caller's fault."""

    http_status = 502
    code = "upstream.error"
    message = "上游服务暂不可用 / Upstream service unavailable"


class ServiceUnavailable(DomainError):
    http_status = 503
    code = "unavailable"
    message = "服务暂不可用 / Service unavailable"
