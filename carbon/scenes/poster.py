"""Printable scene posters (A4 PNG and PDF): the scene's name, its code, how to scan.

The CJK font is Kurinto Sans SC (OFL), installed by the ``weblate-fonts`` dependency.
"""

import functools
import re
from importlib.resources import files
from io import BytesIO

from PIL import Image, ImageDraw, ImageFont, ImageOps

WIDTH, HEIGHT, DPI = 1240, 1754, 150  # A4 portrait at 150 dpi
MARGIN = 100
CODE_SIZE = 960  # the symbol itself, 16.3 cm printed: about 1:12 of a two-metre scanning distance
MIN_CODE_SIZE = 700  # 11.9 cm, when a long title leaves less room
QUIET_ZONE = 48
GREEN, DARK, GREY = "#1B7F4B", "#0F3D2E", "#5B6B64"

_FONT_DIR = "static/weblate_fonts/kurinto/ttf"
# A word of Latin letters or digits, a run of spaces, or one character; closing punctuation sticks to it.
_TOKEN = re.compile(r"(?:[A-Za-z0-9'’.\-]+|\s+|.)[，。、：；！？）》」”,.;:!?)]*")


def cjk_font_path(bold: bool = False) -> str:
    """Path of Kurinto Sans SC (Regular or Bold) inside the installed weblate-fonts package."""
    name = "KurintoSansSC-Bd.ttf" if bold else "KurintoSansSC-Rg.ttf"
    return str(files("weblate_fonts").joinpath(_FONT_DIR, name))


@functools.lru_cache(maxsize=64)
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(cjk_font_path(bold), size)


@functools.lru_cache(maxsize=4096)
def _glyph(char: str) -> tuple:
    font = _font(48)
    return font.getbbox(char), bytes(font.getmask(char))


def font_covers(text: str) -> bool:
    """True when the font draws every non-space character of ``text`` (none falls back to .notdef)."""
    notdef = _glyph("\uffff")  # a noncharacter: never in any font's cmap
    return all(_glyph(c) != notdef for c in set(text) if not c.isspace())


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy line breaking: between CJK characters anywhere, between Latin words at spaces; a line
    break in the text starts a new line (blank lines dropped), other whitespace is one space."""
    lines = []
    for paragraph in text.splitlines():
        lines.append("")
        for token in _TOKEN.findall(" ".join(paragraph.split())):
            if lines[-1] and font.getlength(lines[-1] + token.rstrip()) > width:
                lines.append(token.lstrip())
            else:
                lines[-1] += token
    return [line.strip() for line in lines if line.strip()]


def _fit(text: str, sizes: range, max_lines: int, bold: bool = False) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """The largest size at which ``text`` wraps onto ``max_lines`` lines within the margins, else cut short."""
    width = WIDTH - 2 * MARGIN
    for size in sizes:
        font = _font(size, bold)
        lines = _wrap(text, font, width)
        if len(lines) <= max_lines and all(font.getlength(line) <= width for line in lines):
            break
    else:  # too long even at the smallest size: cut it short
        lines = lines[:max_lines]
        lines[-1] = lines[-1][:-1] + "…"
    return font, lines


def _code_image(code_png: bytes, size: int) -> Image.Image:
    """The code on white, its own white border trimmed, scaled to ``size``; two-tone (QR-like)
    images keep sharp modules."""
    with Image.open(BytesIO(code_png)) as img:
        rgba = img.convert("RGBA")
    flat = Image.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba)
    ink = ImageOps.invert(flat.convert("L")).point(lambda value: 255 if value > 32 else 0).getbbox()
    if ink:
        flat = flat.crop(ink)
    two_tone = flat.getcolors(2) is not None
    method = Image.Resampling.NEAREST if two_tone else Image.Resampling.LANCZOS
    return ImageOps.contain(flat, (size, size), method=method)


def _text_block(draw: ImageDraw.ImageDraw, y: float, font, lines: list[str], fill: str) -> float:
    """Draw centred lines from ``y`` down; return the y below them."""
    step = font.size * 1.3
    for line in lines:
        draw.text((WIDTH / 2, y), line, font=font, fill=fill, anchor="ma")
        y += step
    return y


def _render(title_zh, title_en, code_png, instructions_zh, instructions_en, footer) -> Image.Image:
    poster = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(poster)
    draw.rectangle((0, 0, WIDTH, 36), fill=GREEN)

    y = _text_block(draw, 130, *_fit(title_zh, range(112, 47, -4), 3, bold=True), DARK)
    if title_en:
        y = _text_block(draw, y + 10, *_fit(title_en, range(48, 27, -2), 2), GREY)

    bottom = HEIGHT - (90 if footer else 50)
    instructions = [_fit(instructions_zh, range(48, 27, -2), 2)]
    if instructions_en:
        instructions.append(_fit(instructions_en, range(34, 21, -2), 2))
    below = 50 + sum(font.size * 1.3 * len(lines) for font, lines in instructions)

    room = int(bottom - below - y - 40 - 2 * QUIET_ZONE)
    code = _code_image(code_png, max(MIN_CODE_SIZE, min(CODE_SIZE, room)))
    top = max(y + 40 + QUIET_ZONE, (y + bottom - below - code.height) / 2)
    left = (WIDTH - code.width) // 2
    draw.rounded_rectangle((left - QUIET_ZONE, top - QUIET_ZONE, left + code.width + QUIET_ZONE,
                            top + code.height + QUIET_ZONE), radius=24, outline=GREEN, width=4)
    poster.paste(code, (left, int(top)))

    y = top + code.height + QUIET_ZONE + 36
    for (font, lines), fill in zip(instructions, ("#222222", GREY)):
        y = _text_block(draw, y, font, lines, fill)
    if footer:
        _text_block(draw, HEIGHT - 70, *_fit(footer, range(28, 19, -2), 1), GREY)
    return poster


def render_poster_png(*, title_zh: str, title_en: str | None, code_png: bytes, instructions_zh: str,
                      instructions_en: str | None, footer: str | None = None) -> bytes:
    """The poster as PNG bytes, 1240×1754 px (A4 at 150 dpi)."""
    buf = BytesIO()
    poster = _render(title_zh, title_en, code_png, instructions_zh, instructions_en, footer)
    poster.save(buf, "PNG", dpi=(DPI, DPI))
    return buf.getvalue()


def render_poster_pdf(*, title_zh: str, title_en: str | None, code_png: bytes, instructions_zh: str,
                      instructions_en: str | None, footer: str | None = None) -> bytes:
    """The poster as a one-page A4 PDF for print shops (high-quality JPEG inside, no chroma subsampling)."""
    buf = BytesIO()
    poster = _render(title_zh, title_en, code_png, instructions_zh, instructions_en, footer)
    poster.save(buf, "PDF", resolution=DPI, quality=95, subsampling=0)
    return buf.getvalue()
