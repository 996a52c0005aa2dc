"""WeChat failures turned into our errors.

A problem with what the user brought (a reused login code) is theirs: 4xx ``auth.*``.
Anything else WeChat (or the way to it) does wrong is upstream: 502 ``wechat.*``.
"""
from __future__ import annotations

from carbon.core.errors import DomainError, RateLimited, UpstreamError


class InvalidCode(DomainError):
    http_status = 400
    code = "auth.invalid_code"
    message = "登录凭证无效或已使用，请重新登录 / The login code is invalid, expired or already used"


class UserBlocked(DomainError):
    http_status = 403
    code = "auth.user_blocked"
    message = "微信判定该账号存在风险，登录被拦截 / WeChat blocked this login as high-risk"


class InvalidPhoneCode(DomainError):
    http_status = 400
    code = "auth.invalid_phone_code"
    message = "手机号授权凭证无效或已使用 / The phone-number code is invalid or already used"


class WeChatUnavailable(UpstreamError):
    code = "wechat.unavailable"
    message = "暂时无法连接微信，请稍后再试 / WeChat cannot be reached, try again later"


class WeChatBusy(UpstreamError):
    code = "wechat.busy"
    message = "微信系统繁忙，请稍后再试 / WeChat is busy, try again later"


class WeChatRejected(UpstreamError):
    code = "wechat.rejected"
    message = "微信拒绝了请求 / WeChat rejected the request"


class WeChatRateLimited(RateLimited):
    code = "wechat.rate_limited"
    message = "微信调用过于频繁，请稍后再试 / WeChat rate limit reached, try again later"


class SubscriptionRefused(DomainError):
    http_status = 409
    code = "wechat.subscription_refused"
    message = "用户未订阅该消息 / The user has not accepted this subscription message"


class OpenDataInvalid(DomainError):
    http_status = 400
    code = "auth.invalid_open_data"
    message = "开放数据解密失败 / The encrypted data could not be decrypted or is not for this app"


class InvalidPage(DomainError):
    http_status = 422
    code = "wechat.invalid_page"
    message = "小程序页面不存在或未发布 (41030) / The page does not exist in that version of the mini-program"


class InvalidScene(DomainError):
    http_status = 422
    code = "wechat.invalid_scene"
    message = "场景值不符合微信规则 (40169/40129) / WeChat refused the scene string"
