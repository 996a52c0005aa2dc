"""A small bar chart drawn as SVG on the server: no chart library, no script."""
from __future__ import annotations

from decimal import Decimal

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 220, 56, 36, 16


def bars(points: list[tuple[str, Decimal | int]], *, unit: str, title: str) -> Markup:
    """One bar per ``(label, value)``, with the value above each bar and a few gridlines."""
    top = max((Decimal(value) for _, value in points), default=Decimal(0)) or Decimal(1)
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / max(len(points), 1)
    bar_w = max(4.0, min(48.0, step * 0.6))
    parts = [(f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>')]
    for fraction in (0, Decimal("0.5"), 1):
        y = PAD_TOP + plot_h * (1 - float(fraction))
        parts.append(f'<line x1="{PAD_LEFT}" y1="{y:.1f}" x2="{WIDTH - 8}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{PAD_LEFT - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">'
                     f'{escape(_short(top * Decimal(fraction)))}</text>')
    for index, (label, value) in enumerate(points):
        h = plot_h * float(Decimal(value) / top)
        x = PAD_LEFT + step * index + (step - bar_w) / 2
        y = PAD_TOP + plot_h - h
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" class="bar">'
                     f'<title>{escape(label)}: {escape(_short(value))} {escape(unit)}</title></rect>'
                     f'<text x="{x + bar_w / 2:.1f}" y="{HEIGHT - PAD_BOTTOM + 16}" class="axis" '
                     f'text-anchor="middle">{escape(label)}</text>')
        if value:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{y - 4:.1f}" class="value" text-anchor="middle">'
                         f'{escape(_short(value))}</text>')
    if not points:
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" class="axis" text-anchor="middle">'
                     '暂无数据 / No data yet</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _short(value) -> str:
    number = Decimal(value)
    if number >= 10_000:
        return f"{number / 1000:.0f}k"
    return f"{number.normalize():f}" if number == number.to_integral() else f"{number:.1f}"
