"""Small charts drawn on the server as inline SVG, and the console's template filters.

The Content-Security-Policy (web/security.py) allows no inline script and no inline style,
so a chart is plain SVG elements and attributes: geometry in attributes (``x``, ``height``…),
colours from the site's stylesheet by class (web/static/admin.css), and every text escaped.
Each bar carries ``data-hour`` and ``data-count`` and a ``<title>`` (a tooltip and its
accessible name); the chart has a title and a description a screen reader reads.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

from markupsafe import Markup, escape

WIDTH, HEIGHT = 480, 150
LEFT, BOTTOM, TOP = 34, 20, 12


def _hour(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%H:00")


def bar_chart(series: dict, hours: list[float]) -> Markup:
    key, counts = series["key"], series["counts"]
    peak = max(counts) or 1
    plot_h, step = HEIGHT - BOTTOM - TOP, (WIDTH - LEFT) / len(counts)
    busiest = max(range(len(counts)), key=lambda i: counts[i])
    described = (f"{series['total']} in the last 24 hours" + (
        f"; the busiest hour was {_hour(hours[busiest])} UTC with {counts[busiest]}" if series["total"] else ""))
    parts = [f'<svg class="chart chart-{escape(key)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-labelledby="chart-{escape(key)}-title chart-{escape(key)}-desc" data-series="{escape(key)}" '
             f'data-total="{series["total"]}">',
             f'<title id="chart-{escape(key)}-title">{escape(series["title"])}</title>',
             f'<desc id="chart-{escape(key)}-desc">{escape(described)}</desc>',
             f'<line class="axis" x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH}" y2="{HEIGHT - BOTTOM}"/>',
             f'<line class="grid" x1="{LEFT}" y1="{TOP}" x2="{WIDTH}" y2="{TOP}"/>',
             f'<text class="tick" x="{LEFT - 4}" y="{HEIGHT - BOTTOM}" text-anchor="end">0</text>']
    if max(counts):
        parts.append(f'<text class="tick" x="{LEFT - 4}" y="{TOP + 4}" text-anchor="end">{max(counts)}</text>')
    for i, (count, at) in enumerate(zip(counts, hours)):
        height = round(plot_h * count / peak, 1)
        x = round(LEFT + i * step + 1, 1)
        label = f"{_hour(at)}–{_hour(at + 3600)} UTC: {count}"
        parts.append(f'<rect class="column" x="{x}" y="{round(HEIGHT - BOTTOM - height, 1)}" '
                     f'width="{round(step - 2, 1)}" height="{height}" data-hour="{int(at)}" data-count="{count}">'
                     f'<title>{escape(label)}</title></rect>')
        if i % 6 == 0:
            parts.append(f'<text class="tick" x="{x}" y="{HEIGHT - 5}">{_hour(at)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def when(value) -> str:
    """Unix seconds (or a datetime) as a UTC date and time; empty for nothing."""
    if isinstance(value, datetime):
        value = value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def money(cents, currency=None) -> str:
    if isinstance(cents, bool) or not isinstance(cents, int):
        return ""
    return f"{cents / 100:,.2f} {(currency or '').upper()}".strip()


def compact(value) -> str:
    """A reference (a map, a list) on one line."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return "" if value is None else str(value)


def register_filters(bp) -> None:
    for name, fn in (("admin_when", when), ("admin_money", money), ("admin_compact", compact)):
        bp.add_app_template_filter(fn, name)
