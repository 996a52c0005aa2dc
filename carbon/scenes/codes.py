"""Scene strings: what a printed code carries, within WeChat's rules for ``scene``.

A scene string is ``s=<code>`` or ``s=<code>&c=<channel>`` (at most 29 characters), e.g.
``s=cdcnf21&c=door``. WeChat allows at most 32 visible characters from digits, letters and
``!#$&'()*+,/:;=?@-._~`` — no ``%``. The mini-program receives the scene URL-encoded
(``s%3Dcdcnf21%26c%3Ddoor``); ``parse`` takes it either way.
"""
from __future__ import annotations

import re
import string
from urllib.parse import unquote

from carbon.core.errors import ValidationError

MAX_SCENE_LENGTH = 32
WECHAT_SCENE_CHARS = frozenset(string.ascii_letters + string.digits + "!#$&'()*+,/:;=?@-._~")
CODE_PATTERN = re.compile(r"^[a-z0-9]{4,12}$")
CHANNEL_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,11}$")


class MalformedScene(ValidationError):
    code = "scene.malformed_code"
    message = "场景码格式错误 / Malformed scene code"


def wechat_scene_problem(scene: str) -> str | None:
    """Why WeChat would refuse ``scene`` (getwxacodeunlimit 40169 / 40129), or None."""
    if not scene:
        return "为空 / empty"
    if len(scene) > MAX_SCENE_LENGTH:
        return f"超过 {MAX_SCENE_LENGTH} 个字符 / longer than {MAX_SCENE_LENGTH} characters ({len(scene)})"
    bad = sorted({char for char in scene if char not in WECHAT_SCENE_CHARS})
    if bad:
        return f"含不允许的字符 / characters not allowed: {''.join(bad)!r}"
    return None


def scene_string(code: str, channel: str = "") -> str:
    return f"s={code}&c={channel}" if channel else f"s={code}"


def parse(raw: str) -> tuple[str, str]:
    """``(code, channel)`` from the scene as the mini-program received it, encoded or not."""
    text = unquote(raw) if "%" in raw else raw
    problem = wechat_scene_problem(text)
    if problem:
        raise MalformedScene(details={"scene": [problem]})
    fields: dict[str, str] = {}
    for part in text.split("&"):
        key, sep, value = part.partition("=")
        if not sep or key not in ("s", "c") or key in fields:
            raise MalformedScene(details={"scene": [f"无法识别 / not a Diandian scene: {part!r}"]})
        fields[key] = value
    code, channel = fields.get("s", ""), fields.get("c", "")
    if not CODE_PATTERN.match(code):
        raise MalformedScene(details={"scene": ["场景编号无效 / the scene code must be 4-12 of a-z 0-9"]})
    if "c" in fields and not CHANNEL_PATTERN.match(channel):
        raise MalformedScene(details={"scene": ["渠道无效 / the channel must be 1-12 of a-z 0-9 -"]})
    return code, channel
