"""The receipt as a one-page A4 PDF with real text (searchable, copyable) in Kurinto Sans SC, the
project's CJK font (decision 0005), embedded as a subset: fpdf2 writes it (decision 0017)."""
from __future__ import annotations

from decimal import Decimal

from fpdf import FPDF

from carbon.invoices.service import ReceiptFacts
from carbon.rendering import cjk_font_path

FONT = "kurinto"
GREEN = (27, 122, 74)
GREY = (110, 110, 110)


def money(value: Decimal) -> str:
    return f"¥{value:,.2f}"


def render(facts: ReceiptFacts) -> bytes:
    pdf = FPDF(format="A4", unit="mm")
    pdf.set_creation_date(facts.paid_at)  # the same receipt is the same bytes
    pdf.set_title(f"收据 / Receipt {facts.order}")
    pdf.set_author("点点碳中和 / Diandian")
    pdf.add_font(FONT, "", cjk_font_path())
    pdf.set_margins(20, 20, 20)
    pdf.set_auto_page_break(False)
    pdf.add_page()

    pdf.set_text_color(*GREEN)
    pdf.set_font(FONT, size=24)
    pdf.cell(0, 12, "收据  Receipt", new_x="LMARGIN", new_y="NEXT", align="C")
    pdf.set_font(FONT, size=10)
    pdf.set_text_color(*GREY)
    pdf.cell(0, 6, "点点碳中和 · 碳信用购买 / Diandian · purchase of carbon credits", new_x="LMARGIN", new_y="NEXT",
             align="C")
    pdf.ln(6)

    rows = [
        ("订单号", "Order No.", facts.order),
        ("支付日期", "Date paid (Asia/Shanghai)", facts.paid_at.strftime("%Y-%m-%d %H:%M:%S")),
        ("付款方 / 受益方", "Payer / beneficiary", facts.payer),
        ("项目", "Project", f"{facts.project_zh}\n{facts.project_en}".strip()),
        ("数量", "Quantity", f"{facts.kg:f} kg"),
        ("单价", "Unit price", f"{money(facts.unit_price_per_tonne)} / 吨 tonne"),
        ("金额", "Amount", f"{money(facts.amount)} (CNY)"),
        ("微信支付交易号", "WeChat Pay transaction", facts.transaction_id),
        ("证书编号", "Certificate No.", facts.certificate or "—"),
    ]
    if facts.refund:
        rows.append(("退款", "Refund", f"{facts.refund} · {money(facts.refund_amount)}"))
    label_width = 62
    for zh, en, value in rows:
        top = pdf.get_y()
        pdf.set_text_color(30, 30, 30)
        pdf.set_font(FONT, size=12)
        pdf.cell(label_width, 6, zh, new_x="LEFT", new_y="NEXT")
        pdf.set_font(FONT, size=8)
        pdf.set_text_color(*GREY)
        pdf.cell(label_width, 5, en)
        pdf.set_xy(pdf.l_margin + label_width, top)
        pdf.set_font(FONT, size=12)
        pdf.set_text_color(*((200, 40, 40) if zh == "退款" else (30, 30, 30)))
        pdf.multi_cell(0, 6, value, new_x="LMARGIN", new_y="NEXT")
        pdf.set_y(max(pdf.get_y(), top + 11) + 2)
        pdf.set_draw_color(220, 220, 220)
        pdf.line(pdf.l_margin, pdf.get_y() - 1, pdf.w - pdf.r_margin, pdf.get_y() - 1)

    pdf.ln(8)
    pdf.set_font(FONT, size=9)
    pdf.set_text_color(*GREY)
    pdf.multi_cell(0, 5, "本收据是付款凭证，不是发票。组织可在后台申请发票。购买的碳信用已以付款方名义注销"
                         "（退款不撤销注销）。\nThis receipt is a proof of payment, not a fapiao; an organization can "
                         "request a fapiao in the console. The credits bought were retired in the payer's name "
                         "(a refund does not undo a retirement).")
    return bytes(pdf.output())
