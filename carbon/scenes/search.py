"""What scene search compares: one normalized text per scene, kept in ``scenes.search_text``.

``normalized`` is applied to both sides (NFKC: full-width letters and digits become plain; traditional
characters become simplified; lower case; runs of spaces become one). The stored text adds the full
pinyin and the pinyin initials of the Chinese in the name, the organizer and the city, so that
"首屆", "tanzhonghe" and "sjzg" all find 首届中国数字碳中和高峰论坛. A query is then a substring match
of each of its words (``LIKE``) on that one column: no per-row conversion.
"""
from __future__ import annotations

import functools
import re
import unicodedata

CITY_KEY_LENGTH = 64  # scenes.search_city
SEPARATOR = "\n"  # between the parts of the stored text; query words never contain it
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@functools.cache
def _to_simplified():
    from opencc import OpenCC  # opencc-python-reimplemented

    return OpenCC("t2s")


def normalized(text: str) -> str:
    """``text`` as search compares it."""
    text = _to_simplified().convert(unicodedata.normalize("NFKC", text))
    return " ".join(text.casefold().split())


def city_key(city: str) -> str:
    """A city as the ``city`` filter compares it: normalized, without a trailing 市 (成都市 = 成都)."""
    key = normalized(city)
    return (key[:-1] if len(key) > 1 and key.endswith("市") else key)[:CITY_KEY_LENGTH]


def _pinyin(text: str) -> tuple[str, str]:
    """Full pinyin and initials of the Chinese characters in ``text`` (other characters skipped)."""
    han = "".join(HAN.findall(text))
    if not han:
        return "", ""
    from pypinyin import lazy_pinyin  # loaded on the first save: ~55 MB a worker that only searches never needs

    syllables = [syllable for syllable in lazy_pinyin(han, errors="ignore") if syllable]
    return "".join(syllables), "".join(syllable[0] for syllable in syllables)


def index_text(*, name_zh: str, name_en: str, organizer: str, city: str) -> str:
    """The stored search text of a scene (computed whenever a scene is saved)."""
    parts: list[str] = []
    for value in (name_zh, name_en, organizer, city):
        text = normalized(value or "")
        parts += [text, *_pinyin(text)]
    return SEPARATOR.join(dict.fromkeys(part for part in parts if part))


def query_words(q: str) -> list[str]:
    """The words of a query, normalized like the stored text; each must occur in it."""
    return list(dict.fromkeys(normalized(q).split()))
