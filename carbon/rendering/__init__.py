"""What posters, certificates and share cards draw with: the CJK font, line breaking and fitting,
centred text blocks, and code images made crisp (decision 0005).

The CJK font is Kurinto Sans SC (OFL), installed by the ``weblate-fonts`` dependency. Pillow and
qrcode are imported by the first drawing, not with the app: most processes (the inbox and default
job lanes, a worker that serves no picture) never draw.
"""
from __future__ import annotations

import functools
import re
import threading
from importlib.resources import files
from io import BytesIO
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image, ImageDraw, ImageFont

_FONT_DIR = "static/weblate_fonts/kurinto/ttf"
# A word of Latin letters or digits, a run of spaces, or one character; closing punctuation sticks to it.
_TOKEN = re.compile(r"(?:[A-Za-z0-9'’.\-]+|\s+|.)[，。、：；！？）》」”,.;:!?)]*")


_DRAWING = threading.RLock()


def one_at_a_time(draw):
    """A picture drawn while no other is in this process: a drawing holds a few MB of pixels (the
    canvas, its copy, the encoder's buffers). Four threads drawing cards at once peaked 10 MB higher
    than one after another (VmHWM 52 vs 43 MB) and, on the GIL, finished no sooner (docs/PERFORMANCE.md,
    "Memory per process"); a gthread worker's other threads wait only for the drawing itself."""
    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        with _DRAWING:
            _keep_canvas_blocks()
            return draw(*args, **kwargs)
    return drawn


CANVAS_BLOCKS_KEPT = 2


@functools.cache
def _keep_canvas_blocks() -> None:
    """Pillow keeps the memory blocks of the last freed images for the next (by default it keeps
    none). deploy/ sets ``MALLOC_MMAP_THRESHOLD_`` so large buffers go back to the system when
    freed; without kept blocks every canvas was then mapped afresh and its pages faulted in again:
    a card cost 8.3 ms instead of 6.1 (docs/PERFORMANCE.md, "Certificate pictures"). Two blocks
    are the canvas and its background's copy, one drawing at a time: the peak is unchanged."""
    from PIL import Image

    Image.core.set_blocks_max(CANVAS_BLOCKS_KEPT)


def cjk_font_path(bold: bool = False) -> str:
    """Path of Kurinto Sans SC (Regular or Bold) inside the installed weblate-fonts package."""
    name = "KurintoSansSC-Bd.ttf" if bold else "KurintoSansSC-Rg.ttf"
    return str(files("weblate_fonts").joinpath(_FONT_DIR, name))


def open_font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """A face of its own, for a drawing made once per process (a background): let go after it.
    Each face maps the whole font file again and its first glyphs touch ~3 MB of it."""
    from PIL import ImageFont

    return ImageFont.truetype(cjk_font_path(bold), size)


@functools.lru_cache(maxsize=64)
def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """The face of that size and weight, opened once per process and kept (every drawing uses it)."""
    return open_font(size, bold)


@functools.lru_cache(maxsize=4096)
def _glyph(char: str) -> tuple:
    sample = font(48)
    return sample.getbbox(char), bytes(sample.getmask(char))


def font_covers(text: str) -> bool:
    """True when the font draws every non-space character of ``text`` (none falls back to .notdef)."""
    return not unprintable(text)


def unprintable(text: str) -> str:
    """The characters of ``text`` the font cannot draw (emoji, CJK Extension B …), each once, in order."""
    notdef = _glyph("\uffff")  # a noncharacter: never in any font's cmap
    return "".join(dict.fromkeys(c for c in text if not c.isspace() and _glyph(c) == notdef))


def printable(text: str) -> str:
    """``text`` without the characters the font cannot draw, its spaces tidied."""
    missing = set(unprintable(text))
    return " ".join("".join(c for c in text if c not in missing).split())


def wrap(text: str, face: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy line breaking: between CJK characters anywhere, between Latin words at spaces; a line
    break in the text starts a new line (blank lines dropped), other whitespace is one space."""
    lines = []
    for paragraph in text.splitlines():
        lines.append("")
        for token in _TOKEN.findall(" ".join(paragraph.split())):
            if lines[-1] and face.getlength(lines[-1] + token.rstrip()) > width:
                lines.append(token.lstrip())
            else:
                lines[-1] += token
    return [line.strip() for line in lines if line.strip()]


def fit(text: str, sizes: range, max_lines: int, width: int, bold: bool = False
        ) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """The largest size at which ``text`` wraps onto ``max_lines`` lines of ``width``, else cut short
    with an ellipsis at the smallest size (never overflowing). What the font cannot draw (emoji in a
    scene's name) is left out, never drawn as boxes."""
    missing = set(unprintable(text))
    if missing:
        text = "".join(c for c in text if c not in missing)
    for size in sizes:
        face = font(size, bold)
        lines = wrap(text, face, width)
        if len(lines) <= max_lines and all(face.getlength(line) <= width for line in lines):
            return face, lines
    lines = lines[:max_lines] or [""]
    while lines[-1] and face.getlength(lines[-1] + "…") > width:
        lines[-1] = lines[-1][:-1]
    lines[-1] += "…"
    return face, lines


def text_block(draw: ImageDraw.ImageDraw, x: float, y: float, face, lines: list[str], fill: str,
               anchor: str = "ma") -> float:
    """Draw lines from ``y`` down (centred on ``x`` by default); return the y below them."""
    step = face.size * 1.3
    for line in lines:
        draw.text((x, y), line, font=face, fill=fill, anchor=anchor)
        y += step
    return y


def code_image(code_png: bytes, size: int) -> Image.Image:
    """The code on white, its own white border trimmed, scaled to ``size``; two-tone (QR-like)
    images keep sharp modules."""
    from PIL import Image, ImageOps

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


def qr_png(text: str) -> bytes:
    """A plain QR code (medium error correction) as PNG bytes."""
    import qrcode

    image = qrcode.make(text, border=2, box_size=10, error_correction=qrcode.constants.ERROR_CORRECT_M)
    buffer = BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
