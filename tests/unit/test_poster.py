import io
import itertools
import re

import pytest
import qrcode
import zxingcpp
from PIL import Image, ImageFont, ImageOps

from carbon import rendering
from carbon.scenes import poster

TITLE = "首届中国数字碳中和高峰论坛"
URL = "https://example.invalid/s/abc"
TEXTS = {
    "title_zh": TITLE,
    "title_en": "The First China Digital Carbon Neutrality Summit",
    "instructions_zh": "微信扫一扫，为参会出行碳中和",
    "instructions_en": "Scan with WeChat to go carbon neutral",
    "footer": "点点碳中和 · Diandian",
}


def qr_png(transparent: bool = False) -> bytes:
    img = qrcode.make(URL).get_image().convert("L")
    if transparent:  # like a hyaline mini-program code: dark modules on a transparent background
        img, alpha = Image.new("RGBA", img.size, "black"), ImageOps.invert(img)
        img.putalpha(alpha)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_png_poster_is_a4_at_150_dpi():
    img = Image.open(io.BytesIO(poster.render_poster_png(code_png=qr_png(), **TEXTS)))
    assert (img.format, img.mode, img.size) == ("PNG", "RGB", (1240, 1754))
    assert img.info["dpi"] == pytest.approx((150, 150), abs=0.1)


def test_chinese_glyphs_are_drawn_not_the_missing_glyph_box():
    font = ImageFont.truetype(rendering.cjk_font_path(), 64)
    bitmaps = {ch: bytes(font.getmask(ch)) for ch in "首届碳峰坛"}
    missing = bytes(font.getmask("\ue000"))  # private use: not in the font
    assert missing not in bitmaps.values()
    assert all(a != b for a, b in itertools.combinations(bitmaps.values(), 2))
    assert rendering.font_covers(TITLE + " Summit 2026，（成都）")
    assert not rendering.font_covers("碳\ue000")


@pytest.mark.parametrize("transparent", [False, True])
def test_code_in_the_poster_scans(transparent):
    img = Image.open(io.BytesIO(poster.render_poster_png(code_png=qr_png(transparent), **TEXTS)))
    results = zxingcpp.read_barcodes(img)
    assert [r.text for r in results] == [URL]
    corners = results[0].position  # the symbol itself: the image's own white border is trimmed
    assert corners.top_right.x - corners.top_left.x >= poster.MIN_CODE_SIZE - 20  # ≥ 11.5 cm printed


def test_long_names_wrap_and_stay_on_the_page():
    texts = TEXTS | {"title_zh": TITLE * 8, "title_en": "Carbon Neutrality " * 20, "footer": None}
    img = Image.open(io.BytesIO(poster.render_poster_png(code_png=qr_png(), **texts)))
    results = zxingcpp.read_barcodes(img)
    assert [r.text for r in results] == [URL]
    corners = results[0].position
    assert corners.top_right.x - corners.top_left.x >= poster.MIN_CODE_SIZE - 20


def test_a_name_with_emoji_is_drawn_without_them_not_with_boxes():
    with_emoji = poster.render_poster_png(code_png=qr_png(), **TEXTS | {"title_zh": "🌳绿色论坛🌳", "footer": "点点 🐼"})
    without = poster.render_poster_png(code_png=qr_png(), **TEXTS | {"title_zh": "绿色论坛", "footer": "点点"})
    assert with_emoji == without


def test_pdf_is_one_a4_page():
    pdf = poster.render_poster_pdf(code_png=qr_png(), **TEXTS)
    assert pdf.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf)) == 1
    assert b"/MediaBox [ 0 0 595.2 841.92 ]" in pdf
