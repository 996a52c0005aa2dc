"""A certificate as pictures: the share card (5:4, the ``imageUrl`` of ``onShareAppMessage``) and a
tall poster for Moments (750 px wide) carrying the mini-program code that opens the certificate,
or a QR code of its public page when no mini-program code can be had.

The card is JPEG (flat colours and text at quality 90 look the same and encode several times
faster than PNG); the poster is PNG (its code must stay sharp). The background of each, which
never changes, is drawn once per process (with faces of its own, let go after). Pillow is imported
by the first drawing (carbon.rendering)."""
from __future__ import annotations

import functools
from io import BytesIO
from typing import TYPE_CHECKING

from carbon.rendering import code_image, fit, font, one_at_a_time, open_font, printable, text_block

LAYOUT_VERSION = 4  # change it when the drawing changes: stored images are rendered again
CARD_SIZE = (1000, 800)
POSTER_SIZE = (750, 1334)
GREEN, DARK, GREY, PALE, RED = "#1B7F4B", "#0F3D2E", "#5B6B64", "#EAF4EE", "#B3261E"

if TYPE_CHECKING:
    from PIL import Image


@functools.cache
def _card_background() -> Image.Image:
    from PIL import Image, ImageDraw

    card = Image.new("RGB", CARD_SIZE, "white")
    draw = ImageDraw.Draw(card)
    draw.rectangle((0, 0, CARD_SIZE[0], 150), fill=GREEN)
    draw.rounded_rectangle((40, 190, CARD_SIZE[0] - 40, CARD_SIZE[1] - 40), radius=28, fill=PALE)
    text_block(draw, CARD_SIZE[0] / 2, 34, open_font(56, True), ["碳中和荣誉证书"], "white")
    text_block(draw, CARD_SIZE[0] / 2, 104, open_font(26), ["Carbon Neutrality Certificate · 点点碳中和"], "#D8EFE2")
    return card


@functools.cache
def _poster_background() -> Image.Image:
    from PIL import Image, ImageDraw

    poster = Image.new("RGB", POSTER_SIZE, "white")
    draw = ImageDraw.Draw(poster)
    draw.rectangle((0, 0, POSTER_SIZE[0], 200), fill=GREEN)
    text_block(draw, POSTER_SIZE[0] / 2, 50, open_font(52, True), ["碳中和荣誉证书"], "white")
    text_block(draw, POSTER_SIZE[0] / 2, 124, open_font(24), ["Carbon Neutrality Certificate"], "#D8EFE2")
    text_block(draw, POSTER_SIZE[0] / 2, POSTER_SIZE[1] - 120, open_font(26), ["长按识别，查看并验证证书"], GREY)
    text_block(draw, POSTER_SIZE[0] / 2, POSTER_SIZE[1] - 80, open_font(20), ["Scan to view and verify"], GREY)
    return poster


def facts(record: dict) -> dict[str, str]:
    """What a card says, from the certificate's record: who, how much, where, when, which project.
    Without the characters the font cannot draw (a scene, event or project named with emoji: only the
    beneficiary's own name is refused for them at checkout), which would be drawn as boxes."""
    scene = record.get("scene") or {}
    project = (record.get("projects") or [{}])[0]
    return {"who": printable(record["beneficiary"]) or "点点用户", "kg": f"{record['kg']} kg CO2e",  # (no subscript two)
            "where": printable(scene.get("name") or "") or printable(record.get("event") or "") or "点点碳中和",
            "when": (scene.get("date") or record["issued_at"][:10]),
            "project": f"{printable(project.get('name', ''))}（{printable(project.get('registry', ''))}）",
            "number": record["number"]}


def _stamp_revoked(draw, width: int, height: int) -> None:
    """A revoked certificate's pictures say so across their header: a card shared before the refund
    must not go on looking valid."""
    draw.rectangle((0, 0, width, height), fill=RED)
    text_block(draw, width / 2, height * 0.2, font(52, True), ["证书已撤销"], "white")
    text_block(draw, width / 2, height * 0.66, font(26), ["Revoked: this certificate is no longer valid"], "#F9DEDC")


@one_at_a_time
def render_card(record: dict) -> bytes:
    from PIL import ImageDraw

    said = facts(record)
    card = _card_background().copy()
    draw = ImageDraw.Draw(card)
    width = CARD_SIZE[0] - 160
    if record.get("revoked"):
        _stamp_revoked(draw, CARD_SIZE[0], 150)
    y = text_block(draw, 80, 230, *fit(said["who"], range(64, 35, -4), 1, width, bold=True), DARK, anchor="la")
    claim = ("退款后已撤销 / revoked after a refund", RED) if record.get("revoked") else ("已中和 / neutralized", GREY)
    y = text_block(draw, 80, y + 6, font(34), [claim[0]], claim[1], anchor="la")
    y = text_block(draw, 80, y + 4, *fit(said["kg"], range(88, 59, -4), 1, width, bold=True), GREEN, anchor="la")
    y = text_block(draw, 80, y + 10, *fit(f"{said['where']} · {said['when']}", range(36, 23, -2), 1, width), DARK,
                   anchor="la")
    text_block(draw, 80, y + 6, *fit(said["project"], range(30, 19, -2), 1, width), GREY, anchor="la")
    text_block(draw, CARD_SIZE[0] - 80, CARD_SIZE[1] - 96, font(28), [said["number"]], GREY, anchor="ra")
    buffer = BytesIO()
    card.save(buffer, "JPEG", quality=90, subsampling=0)
    return buffer.getvalue()


@one_at_a_time
def render_poster(record: dict, code_png: bytes) -> bytes:
    from PIL import ImageDraw

    said = facts(record)
    poster = _poster_background().copy()
    draw = ImageDraw.Draw(poster)
    width, centre = POSTER_SIZE[0] - 100, POSTER_SIZE[0] / 2
    if record.get("revoked"):
        _stamp_revoked(draw, POSTER_SIZE[0], 200)
    y = text_block(draw, centre, 250, *fit(said["who"], range(56, 31, -4), 2, width, bold=True), DARK)
    y = text_block(draw, centre, y + 10, *fit(said["kg"], range(76, 51, -4), 1, width, bold=True), GREEN)
    y = text_block(draw, centre, y + 6, *fit(f"{said['where']} · {said['when']}", range(32, 21, -2), 2, width), DARK)
    y = text_block(draw, centre, y, *fit(said["project"], range(26, 17, -2), 2, width), GREY)
    code = code_image(code_png, 360)
    top = int(max(y + 30, POSTER_SIZE[1] - 180 - code.height - 50))
    poster.paste(code, (int(centre - code.width / 2), top))
    text_block(draw, centre, top + code.height + 16, font(26), [said["number"]], GREY)
    buffer = BytesIO()
    poster.save(buffer, "PNG", compress_level=3)
    return buffer.getvalue()
