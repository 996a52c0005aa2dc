"""Certificate pictures: what a share card and a Moments poster cost.

1. In-process, cold (rendered for a certificate for the first time, in a warm process): median and
   p95 ms of ``cards.render_card`` and ``cards.render_poster`` next to a straightforward Pillow +
   qrcode render of the same layout in the same run (everything drawn from scratch, PNG saved with
   Pillow's defaults, the QR code made each time).
2. HTTP, cached: GET /api/v1/certificates/<no>/card.jpg (the stored picture, kept by the worker)
   next to the bare /healthz route, under gunicorn (2 sync workers, 16 keep-alive clients),
   interleaved 3 times.
"""
from __future__ import annotations

import statistics
import time
from decimal import Decimal
from io import BytesIO

import qrcode
from harness import get, gunicorn, load, scratch_database, summary
from PIL import Image, ImageDraw

RECORD = {"number": "DD-2026-000123", "beneficiary": "张小明一家", "kg": "540.954",
          "issued_at": "2026-12-01T01:00:00Z", "scene": {"name": "首届中国数字碳中和高峰论坛", "date": "2026-12-01"},
          "projects": [{"name": "成都市大熊猫栖息地碳汇项目", "registry": "CDCER"}]}


def straightforward(with_code: bool) -> bytes:
    """The obvious way: draw it all, make the QR code, save a PNG."""
    from PIL import ImageFont

    from carbon.rendering import cjk_font_path

    size = (750, 1334) if with_code else (1000, 800)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, size[0], 150), fill="#1B7F4B")
    fonts = {s: ImageFont.truetype(cjk_font_path(), s) for s in (56, 26, 64, 34, 88, 36, 30, 28)}
    draw.text((size[0] / 2, 34), "碳中和荣誉证书", font=fonts[56], fill="white", anchor="ma")
    draw.text((size[0] / 2, 104), "Carbon Neutrality Certificate · 点点碳中和", font=fonts[26], fill="#D8EFE2", anchor="ma")
    draw.rounded_rectangle((40, 190, size[0] - 40, size[1] - 40), radius=28, fill="#EAF4EE")
    y = 230
    for text, face in ((RECORD["beneficiary"], 64), ("已中和 / neutralized", 34), (f"{RECORD['kg']} kg CO2e", 88),
                       ("首届中国数字碳中和高峰论坛 · 2026-12-01", 36), ("成都市大熊猫栖息地碳汇项目（CDCER）", 30)):
        draw.text((80, y), text, font=fonts[face], fill="#0F3D2E")
        y += face * 1.3
    if with_code:
        code = qrcode.make("https://diandian.example/c/DD-2026-000123", border=2, box_size=10).get_image()
        image.paste(code.convert("RGB").resize((360, 360)), (195, int(y) + 30))
    draw.text((size[0] - 80, size[1] - 96), RECORD["number"], font=fonts[28], fill="#5B6B64", anchor="ra")
    buffer = BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def timings(work, runs: int = 40) -> tuple[float, float]:
    work()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95)]


def in_process() -> None:
    from carbon.certificates import cards
    from carbon.rendering import qr_png

    code = qr_png("https://diandian.example/c/DD-2026-000123")
    rows = [("card, ours (JPEG, background kept)", timings(lambda: cards.render_card(RECORD))),
            ("card, straightforward (PNG)", timings(lambda: straightforward(False))),
            ("poster, ours (PNG level 3, code given)", timings(lambda: cards.render_poster(RECORD, code))),
            ("poster, ours + making the QR code", timings(lambda: cards.render_poster(RECORD, qr_png("x" * 40)))),
            ("poster, straightforward (PNG, QR made)", timings(lambda: straightforward(True)))]
    print("## certificate pictures, in-process (median / p95 of 40, warm process)")
    for name, (median, p95) in rows:
        print(f"{name:<42} {median:7.1f} ms   p95 {p95:7.1f} ms")
    print(f"card ratio ours/straightforward {rows[0][1][0] / rows[1][1][0]:.2f}; "
          f"poster (with its QR made) {rows[3][1][0] / rows[4][1][0]:.2f}")


def seed_certificate(url: str) -> str:
    from app import create_app
    from carbon.accounts.models import User
    from carbon.certificates import service as certificates
    from carbon.checkout.models import Order
    from carbon.core.clock import utcnow
    from carbon.core.db import db
    from carbon.credits.models import Project

    app = create_app({"ENV": "testing", "DATABASE_URL": url, "LOG_REQUESTS": False, "WECHAT_TEMPLATE_CERTIFICATE": ""})
    with app.app_context():
        user = User(openid="o_bench")
        project = Project(registry_name="CDCER", name_zh="成都市大熊猫栖息地碳汇项目", name_en="-", methodology="-",
                          location="-", price_per_tonne=Decimal(60), unit_kg=Decimal(1))
        db.session.add_all([user, project])
        db.session.flush()
        order = Order(user_id=user.id, project=project, units=541, kg=Decimal(541), amount=Decimal("32.46"),
                      status="paid", beneficiary_name="张小明一家", purpose="-", expires_at=utcnow(), paid_at=utcnow())
        db.session.add(order)
        db.session.commit()
        certificates.issue_for_paid_order({"order": order.public_id})
        db.session.commit()
        number = db.session.scalar(db.select(certificates.Certificate.number))
        certificates.image(number, "card")
        db.session.commit()
        return number


def over_http() -> None:
    with scratch_database() as url:
        number = seed_certificate(url)
        results = {"bare /healthz": [], "card.jpg (cached)": []}
        with gunicorn({"DIANDIAN_DATABASE_URL": url}) as base:
            for _ in range(3):
                results["bare /healthz"].append(load("bare /healthz", base, get("/healthz")))
                results["card.jpg (cached)"].append(load("card.jpg (cached)", base,
                                                         get(f"/api/v1/certificates/{number}/card.jpg")))
        print(summary("a stored share card over HTTP next to the bare route (SQLite, gunicorn 2 sync workers)",
                      results, "bare /healthz"))


if __name__ == "__main__":
    in_process()
    over_http()
