"""The taxpayer identification number (纳税人识别号) on a fapiao: the 18-character unified social
credit code (统一社会信用代码, GB 32100-2015, with its check character), or a legacy 15- or
20-character tax registration number (digits and capital letters)."""
from __future__ import annotations

import re

USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # no I, O, S, V, Z
_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC = re.compile(rf"^[{USCC_CHARS}]{{2}}\d{{6}}[{USCC_CHARS}]{{10}}$")
_LEGACY = re.compile(r"^[0-9A-Z]{15}$|^[0-9A-Z]{20}$")


def normalize(value: str) -> str:
    """Upper case, without spaces or hyphens (as people type them off a business licence)."""
    return re.sub(r"[\s\-]", "", value).upper()


def check_character(first17: str) -> str:
    total = sum(USCC_CHARS.index(char) * weight for char, weight in zip(first17, _WEIGHTS, strict=True))
    return USCC_CHARS[(31 - total % 31) % 31]


def problem(value: str) -> str | None:
    """Why ``value`` (normalized) is not a taxpayer id, in Chinese then English; None when it is one."""
    if len(value) == 18:
        if not _USCC.match(value):
            return ("统一社会信用代码格式不正确（不含 I、O、S、V、Z） / Not a unified social credit code "
                    "(18 characters; no I, O, S, V or Z)")
        if check_character(value[:17]) != value[17]:
            return "统一社会信用代码校验位不正确 / The unified social credit code's check character is wrong"
        return None
    if len(value) in (15, 20):
        return None if _LEGACY.match(value) else "只能包含数字和大写字母 / Only digits and capital letters"
    return ("纳税人识别号应为 15、18 或 20 位 / A taxpayer id has 15, 18 or 20 characters "
            f"(this one has {len(value)})")
