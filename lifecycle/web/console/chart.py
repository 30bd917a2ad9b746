"""The overview's chart, drawn on the server as inline SVG (no script, no library): one system's
worst time to revoke per day over the period, on a log scale, against the termination SLA.

Within the SLA a day is a circle, over it a triangle with the words "over SLA" in its tooltip,
so the chart reads without colour; the table next to it says the same in numbers.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from xml.sax.saxutils import escape, quoteattr

from markupsafe import Markup

from lifecycle.web.console.views import SystemRevokeTimes, human_ms

WIDTH = 640
HEIGHT = 200
LEFT = 72
RIGHT = 12
TOP = 12
BOTTOM = 28
TICKS = (
    (100, "100 ms"),
    (1_000, "1 s"),
    (10_000, "10 s"),
    (60_000, "1 min"),
    (600_000, "10 min"),
    (3_600_000, "1 h"),
    (36_000_000, "10 h"),
    (86_400_000, "1 d"),
)


def _y(ms: float, low: float, high: float) -> float:
    span = math.log10(high) - math.log10(low)
    frac = (math.log10(max(ms, low)) - math.log10(low)) / span
    return TOP + (1 - min(frac, 1.0)) * (HEIGHT - TOP - BOTTOM)


def revoke_chart(times: SystemRevokeTimes, first_day: date, days: int) -> Markup:
    """The SVG of ``times`` over ``days`` days from ``first_day``."""
    worst = times.worst_ms or 0
    low = 100.0
    high = float(max(times.sla_ms * 2, worst * 1.5, 1000))
    plot_w = WIDTH - LEFT - RIGHT
    step = plot_w / max(days, 1)

    def x(day: date) -> float:
        return LEFT + ((day - first_day).days + 0.5) * step

    title_id = f"chart-{times.system}-title"
    desc_id = f"chart-{times.system}-desc"
    over = times.over_sla
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f"aria-labelledby={quoteattr(title_id)} aria-describedby={quoteattr(desc_id)} "
        'preserveAspectRatio="xMidYMid meet">',
        f"<title id={quoteattr(title_id)}>Time to revoke in {escape(times.system)}, "
        f"worst per day over {days} days</title>",
        f"<desc id={quoteattr(desc_id)}>{times.count} terminations, {over} over the SLA of "
        f"{escape(human_ms(times.sla_ms))}; worst {escape(human_ms(times.worst_ms))}.</desc>",
    ]
    for tick, tick_label in TICKS:
        if low <= tick <= high:
            ty = _y(tick, low, high)
            parts.append(
                f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty:.1f}" '
                f'y2="{ty:.1f}"/>'
                f'<text class="tick" x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end">'
                f"{tick_label}</text>"
            )
    sla_y = _y(times.sla_ms, low, high)
    parts.append(
        f'<line class="sla" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{sla_y:.1f}" y2="{sla_y:.1f}"/>'
        f'<text class="sla-label" x="{WIDTH - RIGHT - 4}" y="{sla_y - 5:.1f}" '
        f'text-anchor="end">SLA {escape(human_ms(times.sla_ms))}</text>'
    )
    for offset in range(0, days, 7):
        day = first_day + timedelta(days=offset)
        parts.append(
            f'<text class="tick" x="{x(day):.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
            f"{day:%m-%d}</text>"
        )
    parts.append(
        f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{HEIGHT - BOTTOM}" '
        f'y2="{HEIGHT - BOTTOM}"/>'
    )
    for day, ms in sorted(times.by_day.items()):
        if not 0 <= (day - first_day).days < days:
            continue
        px, py = x(day), _y(ms, low, high)
        label = f"{day:%Y-%m-%d}: worst {human_ms(ms)}"
        if ms > times.sla_ms:
            points = f"{px:.1f},{py - 6:.1f} {px - 6:.1f},{py + 5:.1f} {px + 6:.1f},{py + 5:.1f}"
            parts.append(
                f'<polygon class="point over" points="{points}">'
                f"<title>{escape(label)} (over SLA)</title></polygon>"
            )
        else:
            parts.append(
                f'<circle class="point" cx="{px:.1f}" cy="{py:.1f}" r="4">'
                f"<title>{escape(label)} (within SLA)</title></circle>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value above is escaped
