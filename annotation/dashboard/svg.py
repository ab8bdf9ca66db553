"""Small server-side SVG charts for the dashboard: horizontal bars, stacked bars, a heatmap and a line chart.

Every value is printed on or next to its mark, so a chart reads without hovering. Label names are user data: all text
goes through ``format_html``/``escape``, never into markup unescaped. Charts return ``SafeString`` for templates.
"""
from collections.abc import Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

CHAR_WIDTH = 7.2  # px per character of the 12px sans-serif labels, for layout only
MAX_LABEL_CHARS = 28
ROW = 26
PALETTE = ["#2f5bd3", "#1a7f37", "#cf222e", "#9a6700", "#8250df", "#0a7f8c", "#bc4c00", "#59636e"]


def _short(text: str, limit: int = MAX_LABEL_CHARS) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _label_width(names: Sequence[str]) -> float:
    longest = max((len(_short(n)) for n in names), default=4)
    return min(MAX_LABEL_CHARS, max(4, longest)) * CHAR_WIDTH + 12


def _fmt(value: float | None, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def _join(parts: Sequence[SafeString]) -> SafeString:
    # Every part was built by format_html; conditional escaping leaves them as they are and would escape anything else.
    return format_html_join("", "{}", ((part,) for part in parts))


def _svg(width: float, height: float, title: str, body: SafeString) -> SafeString:
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" width="{}" height="{}" role="img" '
        'xmlns="http://www.w3.org/2000/svg"><title>{}</title>{}</svg>',
        round(width), round(height), round(width), round(height), title, body,
    )


def _row_label(x: float, y: float, name: str) -> SafeString:
    """A left-column label, shortened to fit, with the full name as a tooltip."""
    return format_html('<text x="{}" y="{}" text-anchor="end" class="chart-label"><title>{}</title>{}</text>',
                       round(x, 1), round(y, 1), name, _short(name))


def _legend(names: Sequence[str], colors: Sequence[str], *, width: float, swatch_h: int = 12
            ) -> tuple[list[SafeString], int]:
    """Colour swatches with their names, wrapped onto as many 18px lines as the width needs; returns the height."""
    parts, x, y = [], 4.0, 4
    for k, name in enumerate(names):
        room = 16 + len(str(name)) * CHAR_WIDTH + 14
        if x > 4 and x + room > width:
            x, y = 4.0, y + 18
        parts.append(format_html('<rect x="{}" y="{}" width="12" height="{}" fill="{}"/>'
                                 '<text x="{}" y="{}" class="chart-legend">{}</text>',
                                 round(x, 1), y + (12 - swatch_h) // 2, swatch_h, colors[k % len(colors)],
                                 round(x + 16, 1), y + 10, name))
        x += room
    return parts, y + 18


def bar_chart(rows: Sequence[tuple[str, float | None]], *, title: str, fmt: str = "{:,.0f}",
              max_value: float | None = None, color: str = PALETTE[0], width: int = 560) -> SafeString:
    """Horizontal bars, one per (name, value), the value printed after the bar."""
    left = _label_width([r[0] for r in rows])
    scale_to = max_value or max((v or 0 for _, v in rows), default=0) or 1
    bar_space = width - left - 70
    parts = []
    for i, (name, value) in enumerate(rows):
        y = 8 + i * ROW
        length = bar_space * (value or 0) / scale_to
        parts.append(_row_label(left - 6, y + 14, name))
        parts.append(format_html('<rect x="{}" y="{}" width="{}" height="18" rx="2" fill="{}"/>',
                                 round(left, 1), y, round(length, 1), color))
        parts.append(format_html('<text x="{}" y="{}" class="chart-value">{}</text>',
                                 round(left + length + 5, 1), y + 14, _fmt(value, fmt)))
    return _svg(width, 16 + len(rows) * ROW, title, _join(parts))


def stacked_bars(rows: Sequence[tuple[str, Sequence[float]]], segments: Sequence[str], *, title: str,
                 colors: Sequence[str] = PALETTE, width: int = 640, shares: bool = False) -> SafeString:
    """Horizontal stacked bars: each row's parts in ``segments`` order, a legend on top, each part's count printed
    inside it when it fits and the row total after the bar. ``shares`` scales every row to the full width."""
    left = _label_width([r[0] for r in rows])
    bar_space = width - left - 70
    longest = max((sum(v) for _, v in rows), default=0) or 1
    parts, legend_h = _legend(segments, colors, width=width)
    for i, (name, values) in enumerate(rows):
        y = legend_h + 6 + i * ROW
        total = sum(values)
        scale = bar_space / (total if shares and total else longest)
        parts.append(_row_label(left - 6, y + 14, name))
        x = left
        for k, value in enumerate(values):
            w = value * scale
            if w <= 0:
                continue
            parts.append(format_html('<rect x="{}" y="{}" width="{}" height="18" fill="{}"><title>{}: {}</title></rect>',
                                     round(x, 1), y, round(w, 1), colors[k % len(colors)], segments[k], value))
            if w >= len(f"{value:,}") * CHAR_WIDTH + 4:
                parts.append(format_html('<text x="{}" y="{}" text-anchor="middle" class="chart-inside">{}</text>',
                                         round(x + w / 2, 1), y + 14, f"{value:,}"))
            x += w
        parts.append(format_html('<text x="{}" y="{}" class="chart-value">{}</text>',
                                 round(x + 5, 1), y + 14, f"{total:,}"))
    return _svg(width, legend_h + 14 + len(rows) * ROW, title, _join(parts))


def heatmap(rows: Sequence[str], cols: Sequence[str], matrix: Sequence[Sequence[float]], *, title: str,
            marked: Sequence[Sequence[bool]] | None = None, row_title: str = "", col_title: str = "",
            cell: int = 64) -> SafeString:
    """A grid of counts, darker for more, every count printed in its cell; ``marked`` cells get a dashed red
    outline (thin coverage)."""
    left = _label_width(rows)
    top = 46
    peak = max((v for r in matrix for v in r), default=0) or 1
    parts = []
    if col_title:
        parts.append(format_html('<text x="{}" y="12" class="chart-legend">{}</text>', round(left, 1), col_title))
    if row_title:
        parts.append(format_html('<text x="4" y="{}" class="chart-legend">{}</text>', top - 6, row_title))
    for j, col in enumerate(cols):
        parts.append(format_html(
            '<text x="{}" y="{}" text-anchor="middle" class="chart-label"><title>{}</title>{}</text>',
            round(left + j * cell + cell / 2, 1), top - 8, col, _short(col, 9)))
    for i, name in enumerate(rows):
        y = top + i * cell * 0.6
        parts.append(_row_label(left - 6, y + cell * 0.35, name))
        for j, value in enumerate(matrix[i]):
            strength = value / peak
            fill = f"rgba(47,91,211,{0.08 + 0.85 * strength:.2f})"
            thin = bool(marked and marked[i][j])
            parts.append(format_html(
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}" stroke="{}" stroke-width="{}" stroke-dasharray="{}">'
                '<title>{} × {}: {}</title></rect>',
                round(left + j * cell, 1), round(y, 1), cell - 2, round(cell * 0.6 - 2, 1), fill,
                "#cf222e" if thin else "#fff", 2 if thin else 1, "4 2" if thin else "none",
                name, cols[j], value))
            parts.append(format_html(
                '<text x="{}" y="{}" text-anchor="middle" class="{}">{}</text>',
                round(left + j * cell + cell / 2 - 1, 1), round(y + cell * 0.35, 1),
                "chart-inside" if strength > 0.55 else "chart-value", f"{value:,}"))
    return _svg(left + len(cols) * cell + 8, top + len(rows) * cell * 0.6 + 8, title, _join(parts))


def line_chart(x_labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]], *, title: str,
               y_max: float = 1.0, fmt: str = "{:.2f}", colors: Sequence[str] = PALETTE, width: int = 640,
               height: int = 220) -> SafeString:
    """Lines over ordered x values (e.g. jobs), each point's value printed above it; a legend on top."""
    parts, legend_h = _legend([name for name, _ in series], colors, width=width, swatch_h=4)
    left, right, top, bottom = 36, 16, legend_h + 16, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(1, len(x_labels) - 1)
    parts += [format_html('<line x1="{}" y1="{}" x2="{}" y2="{}" class="chart-axis"/>',
                         left, top + plot_h, width - right, top + plot_h)]
    for tick in (0, 0.5, 1):
        y = top + plot_h * (1 - tick)
        parts.append(format_html('<text x="{}" y="{}" text-anchor="end" class="chart-label">{}</text>',
                                 left - 4, round(y + 4, 1), fmt.format(tick * y_max)))
    for j, name in enumerate(x_labels):
        parts.append(format_html('<text x="{}" y="{}" text-anchor="middle" class="chart-label">{}</text>',
                                 round(left + j * step, 1), height - 8, _short(name, 10)))
    for k, (_name, values) in enumerate(series):
        color = colors[k % len(colors)]
        points = [(left + j * step, top + plot_h * (1 - min(v, y_max) / y_max), v)
                  for j, v in enumerate(values) if v is not None]
        if len(points) > 1:
            parts.append(format_html('<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>', color,
                                     " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in points)))
        parts.append(format_html_join("", '<circle cx="{}" cy="{}" r="3" fill="{}"/>'
                                      '<text x="{}" y="{}" text-anchor="middle" class="chart-point">{}</text>',
                                      ((round(px, 1), round(py, 1), color, round(px, 1), round(py - 6, 1),
                                        fmt.format(v)) for px, py, v in points)))
    return _svg(width, height, title, _join(parts))

