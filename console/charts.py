"""Server-rendered SVG line charts: no script and nothing from outside, so they work under
the strict CSP and print as they look. Only numbers and escaped names reach the markup."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from console.figures import Series

WIDTH, HEIGHT, PAD = 360, 120, 24
COLOURS = ("#2b6cb0", "#c05621", "#2f855a", "#9b2c2c", "#6b46c1", "#4a5568")


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}".rstrip("0").rstrip(".") or "0"


def line_chart(
    *, title: str, series: list[Series], start: datetime, window: timedelta
) -> SafeString:
    """A chart of `series` over [start, start + window], the y axis from 0 to the maximum."""
    top = max((value for line in series for _at, value in line.points), default=0.0)
    scale = top if top > 0 else 1.0
    span = window.total_seconds()
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD

    def x(at: datetime) -> float:
        return PAD + inner_w * min(1.0, max(0.0, (at - start).total_seconds() / span))

    def y(value: float) -> float:
        return PAD + inner_h * (1.0 - value / scale)

    lines = []
    for index, line in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        coordinates = " ".join(f"{x(at):.1f},{y(value):.1f}" for at, value in line.points)
        lines.append(
            format_html(
                '<polyline class="series" data-series="{}" fill="none" stroke="{}" '
                'stroke-width="1.5" points="{}"/>',
                line.name,
                colour,
                coordinates,
            )
        )
    legend = format_html_join(
        "",
        '<tspan fill="{}" dx="8">■ {}</tspan>',
        ((COLOURS[i % len(COLOURS)], line.name) for i, line in enumerate(series)),
    )
    empty = (
        format_html(
            '<text x="{}" y="{}" text-anchor="middle" class="empty">no samples yet</text>',
            WIDTH // 2,
            HEIGHT // 2,
        )
        if not any(line.points for line in series)
        else ""
    )
    return format_html(
        '<svg class="chart" role="img" aria-label="{title}" viewBox="0 0 {w} {h}" width="{w}" '
        'height="{h}" xmlns="http://www.w3.org/2000/svg">'
        "<title>{title}</title>"
        '<rect x="{pad}" y="{pad}" width="{iw}" height="{ih}" fill="none" stroke="#ccc"/>'
        '<text x="{pad}" y="14" class="chart-title">{title}</text>'
        '<text x="{right}" y="14" text-anchor="end" class="chart-max">max {top}</text>'
        "{lines}{empty}"
        '<text x="{pad}" y="{legend_y}" class="legend">{legend}</text>'
        "</svg>",
        title=title,
        w=WIDTH,
        h=HEIGHT,
        pad=PAD,
        iw=inner_w,
        ih=inner_h,
        right=WIDTH - PAD,
        top=_number(top),
        lines=mark_safe("".join(lines)),  # noqa: S308 - each part built by format_html
        empty=empty,
        legend_y=HEIGHT - 6,
        legend=legend,
    )
