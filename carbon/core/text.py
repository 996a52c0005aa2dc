"""Which text the service takes in: the one rule for every string it stores or looks up.

PostgreSQL refuses NUL in text, UTF-8 cannot encode an unpaired surrogate (``"\\ud800"`` is valid
JSON), and control characters are invisible in every place a person reads a name. Tab and line
breaks are ordinary text and stay.
"""
from __future__ import annotations

import re

_UNSTORABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def unstorable(text: str) -> str | None:
    """The first character of ``text`` that the service refuses, as ``U+XXXX``; None when there is none."""
    found = _UNSTORABLE.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


def unstorable_message(character: str) -> str:
    return (f"含有不可保存的字符 {character}（NUL、控制字符或不成对的代理项）/ Contains {character}: NUL, control "
            "characters and unpaired surrogates cannot be stored")
