"""Receipt PDFs: CPU time per receipt in a warm process, and how much of it is reading the font.

fpdf2 reads the TrueType font (Kurinto Sans SC, 10 MB) for every document and embeds the subset of
glyphs used; this prints the CPU ms of the whole receipt next to an empty document that only loads
the font, in the same run, with the calibration loop first (bench/harness.py).
"""
from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime
from decimal import Decimal

from fpdf import FPDF
from harness import calibration_ms

from carbon.invoices.receipt import render
from carbon.invoices.service import ReceiptFacts
from carbon.rendering import cjk_font_path

FACTS = ReceiptFacts(order="ord_4k9x2m8q7w1z", paid_at=datetime(2026, 12, 1, 1, 2, 3, tzinfo=UTC),
                     payer="首届中国数字碳中和高峰论坛组委会", project_zh="成都市大熊猫栖息地碳汇项目",
                     project_en="Chengdu giant panda habitat carbon sink", kg=Decimal("2000.000"),
                     unit_price_per_tonne=Decimal("60.00"), amount=Decimal("120.00"),
                     transaction_id="4200002345202612011234567890", certificate="DD-2026-000123",
                     refund="已退款 / Refunded", refund_amount=Decimal("120.00"))


def font_only() -> bytes:
    pdf = FPDF()
    pdf.add_font("kurinto", "", cjk_font_path())
    pdf.add_page()
    pdf.set_font("kurinto", size=12)
    pdf.cell(text="收据")
    return bytes(pdf.output())


def cpu_ms(work, runs: int = 15) -> list[float]:
    work()
    samples = []
    for _ in range(runs):
        started = time.process_time()
        work()
        samples.append((time.process_time() - started) * 1000)
    return samples


def main() -> None:
    print(f"calibration: {calibration_ms():.1f} ms (sum(range(10**6)))")
    full, font = [], []
    for _ in range(3):  # interleaved, so both see the same machine
        full += cpu_ms(lambda: render(FACTS))
        font += cpu_ms(font_only)
    size = len(render(FACTS))
    print(f"receipt: median {statistics.median(full):.0f} ms CPU, p95 {sorted(full)[int(len(full) * .95)]:.0f} ms, "
          f"{size / 1024:.0f} KiB")
    print(f"font load + one word: median {statistics.median(font):.0f} ms CPU "
          f"({statistics.median(font) / statistics.median(full):.0%} of a receipt)")


if __name__ == "__main__":
    main()
