"""Value rules of subscribe-message keyword types (WECHAT_PROTOCOLS.md §4).

Each rule takes a non-empty value and returns ``None`` when it is acceptable, else a
short reason that goes into the 47003 errmsg.
"""
from __future__ import annotations

import re
from collections.abc import Callable

CJK = "\u4e00-\u9fff"
_MONTH = r"(?:0?[1-9]|1[0-2])"
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_DATE = (
    rf"\d{{4}}年{_MONTH}月{_DAY}日"
    rf"|\d{{4}}-{_MONTH}-{_DAY}"
    rf"|\d{{4}}/{_MONTH}/{_DAY}"
)
_CLOCK = r"(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?"
_TIME_POINT = rf"(?:(?:{_DATE})\s*)?{_CLOCK}"
_DATE_POINT = rf"(?:{_DATE})(?:\s*{_CLOCK})?"

TIME_RE = re.compile(rf"{_TIME_POINT}(?:\s*~\s*{_TIME_POINT})?")
DATE_RE = re.compile(rf"{_DATE_POINT}(?:\s*~\s*{_DATE_POINT})?")
NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")
AMOUNT_RE = re.compile(r"[¥￥$€£]?(\d+(?:\.\d+)?)元?")
LETTER_RE = re.compile(r"[A-Za-z]{1,32}")
CJK_NAME_RE = re.compile(rf"[{CJK}·]{{1,10}}")
LATIN_NAME_RE = re.compile(r"[A-Za-z][A-Za-z .'-]{0,19}")
PHRASE_RE = re.compile(rf"[{CJK}]{{1,5}}")


def _is_symbol(char: str) -> bool:
    return not char.isalnum() and not char.isspace() and char.isprintable()


def _digit_count(text: str) -> int:
    return sum(char.isdigit() for char in text)


def _thing(value: str) -> str | None:
    return None if len(value) <= 20 else "longer than 20 characters"


def _number(value: str) -> str | None:
    if not NUMBER_RE.fullmatch(value):
        return "not a number"
    return None if _digit_count(value) <= 32 else "more than 32 digits"


def _letter(value: str) -> str | None:
    return None if LETTER_RE.fullmatch(value) else "not 1-32 letters"


def _symbol(value: str) -> str | None:
    if len(value) > 5:
        return "more than 5 symbols"
    return None if all(_is_symbol(char) for char in value) else "not only symbols"


def _character_string(value: str) -> str | None:
    if len(value) > 32:
        return "longer than 32 characters"
    ok = all(char.isascii() and (char.isalnum() or _is_symbol(char)) for char in value)
    return None if ok else "only digits, letters and symbols are allowed"


def _time(value: str) -> str | None:
    return None if TIME_RE.fullmatch(value) else "not a 24-hour time"


def _date(value: str) -> str | None:
    return None if DATE_RE.fullmatch(value) else "not a date"


def _amount(value: str) -> str | None:
    match = AMOUNT_RE.fullmatch(value)
    if not match:
        return "not an amount"
    return None if _digit_count(match.group(1)) <= 10 else "more than 10 digits"


def _phone_number(value: str) -> str | None:
    if len(value) > 17:
        return "longer than 17 characters"
    ok = any(char.isdigit() for char in value) and all(
        char.isascii() and (char.isdigit() or _is_symbol(char)) for char in value
    )
    return None if ok else "only digits and symbols are allowed"


def _car_number(value: str) -> str | None:
    if len(value) > 8:
        return "longer than 8 characters"
    return None if all(char.isalnum() for char in value) else "not a plate number"


def _name(value: str) -> str | None:
    ok = CJK_NAME_RE.fullmatch(value) or LATIN_NAME_RE.fullmatch(value)
    return None if ok else "not 1-10 Chinese characters or 1-20 letters"


def _phrase(value: str) -> str | None:
    return None if PHRASE_RE.fullmatch(value) else "not 1-5 Chinese characters"


KEYWORD_RULES: dict[str, Callable[[str], str | None]] = {
    "thing": _thing,
    "number": _number,
    "letter": _letter,
    "symbol": _symbol,
    "character_string": _character_string,
    "time": _time,
    "date": _date,
    "amount": _amount,
    "phone_number": _phone_number,
    "car_number": _car_number,
    "name": _name,
    "phrase": _phrase,
}
