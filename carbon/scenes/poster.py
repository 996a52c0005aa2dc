"""Printable scene posters (A4 PNG and PDF): the scene's name, its code, how to scan."""

from __future__ import annotations

from io import BytesIO
from typing import TYPE_CHECKING

from carbon.rendering import code_image, fit, one_at_a_time, text_block

if TYPE_CHECKING:
    from PIL import Image

WIDTH, HEIGHT, DPI = 1240, 1754, 150  # A4 portrait at 150 dpi
MARGIN = 100
CODE_SIZE = 960  # the symbol itself, 16.3 cm printed: about 1:12 of a two-metre scanning distance
MIN_CODE_SIZE = 700  # 11.9 cm, when a long title leaves less room
QUIET_ZONE = 48
GREEN, DARK, GREY = "#1B7F4B", "#0F3D2E", "#5B6B64"

def _fit(text: str, sizes: range, max_lines: int, bold: bool = False):
    return fit(text, sizes, max_lines, WIDTH - 2 * MARGIN, bold)


def _text_block(draw, y, face, lines, fill):
    return text_block(draw, WIDTH / 2, y, face, lines, fill)


def _render(title_zh, title_en, code_png, instructions_zh, instructions_en, footer) -> Image.Image:
    from PIL import Image, ImageDraw  # imported by the first poster, not with the app

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
    code = code_image(code_png, max(MIN_CODE_SIZE, min(CODE_SIZE, room)))
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


@one_at_a_time
def render_poster_png(*, title_zh: str, title_en: str | None, code_png: bytes, instructions_zh: str,
                      instructions_en: str | None, footer: str | None = None) -> bytes:
    """The poster as PNG bytes, 1240×1754 px (A4 at 150 dpi)."""
    buf = BytesIO()
    poster = _render(title_zh, title_en, code_png, instructions_zh, instructions_en, footer)
    poster.save(buf, "PNG", dpi=(DPI, DPI))
    return buf.getvalue()


@one_at_a_time
def render_poster_pdf(*, title_zh: str, title_en: str | None, code_png: bytes, instructions_zh: str,
                      instructions_en: str | None, footer: str | None = None) -> bytes:
    """The poster as a one-page A4 PDF for print shops (high-quality JPEG inside, no chroma subsampling)."""
    buf = BytesIO()
    poster = _render(title_zh, title_en, code_png, instructions_zh, instructions_en, footer)
    poster.save(buf, "PDF", resolution=DPI, quality=95, subsampling=0)
    return buf.getvalue()
