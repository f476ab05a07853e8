"""Charts as inline SVG, drawn on the server: no JavaScript, no external files, nothing a strict
Content-Security-Policy forbids (presentation attributes only, no ``style``). Colours come from the
stylesheet through class names, with fills as attributes so the standalone report needs no CSS."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

PALETTE = ("#2f6f9f", "#c0504d", "#9bbb59", "#8064a2", "#f79646", "#4bacc6")
WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 220, 40, 40, 12


def _scale(maximum: float) -> float:
    return (HEIGHT - PAD_BOTTOM - PAD_TOP) / maximum if maximum > 0 else 0.0


def _axis(maximum: float, labels: Sequence[str], step: float) -> list[str]:
    parts = [f'<line x1="{PAD_LEFT}" y1="{HEIGHT - PAD_BOTTOM}" x2="{WIDTH}" y2="{HEIGHT - PAD_BOTTOM}" '
             'stroke="#888" stroke-width="1"/>',
             f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + 4}" text-anchor="end" font-size="10">{maximum:g}</text>',
             f'<text x="{PAD_LEFT - 4}" y="{HEIGHT - PAD_BOTTOM}" text-anchor="end" font-size="10">0</text>']
    every = max(1, len(labels) // 8)
    for index, label in enumerate(labels):
        if index % every == 0:
            x = PAD_LEFT + step * index + step / 2
            parts.append(f'<text x="{x:.1f}" y="{HEIGHT - PAD_BOTTOM + 14}" text-anchor="middle" '
                         f'font-size="10">{escape(label)}</text>')
    return parts


def _svg(title: str, parts: list[str], legend: Sequence[str] = ()) -> Markup:
    keys = "".join(
        f'<rect x="{PAD_LEFT + 130 * i}" y="{HEIGHT - 14}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
        f'<text x="{PAD_LEFT + 14 + 130 * i}" y="{HEIGHT - 5}" font-size="11">{escape(name)}</text>'
        for i, name in enumerate(legend))
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
                  f'class="chart" aria-label="{escape(title)}"><title>{escape(title)}</title>'
                  + "".join(parts) + keys + "</svg>")


def stacked_bars(title: str, rows: Sequence[tuple[str, dict[str, int]]], series: Sequence[str],
                 legend: Sequence[str] | None = None) -> Markup:
    """One bar per row (a day), stacked by series."""
    maximum = max([sum(values.get(s, 0) for s in series) for _, values in rows] + [1])
    step = (WIDTH - PAD_LEFT) / max(len(rows), 1)
    scale = _scale(maximum)
    parts = _axis(maximum, [label[5:] for label, _ in rows], step)
    for index, (label, values) in enumerate(rows):
        y = HEIGHT - PAD_BOTTOM
        for number, name in enumerate(series):
            height = values.get(name, 0) * scale
            if height:
                y -= height
                parts.append(f'<rect x="{PAD_LEFT + step * index + 1:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" '
                             f'height="{height:.1f}" fill="{PALETTE[number % len(PALETTE)]}">'
                             f'<title>{escape(label)} {escape(name)}: {values.get(name, 0)}</title></rect>')
    return _svg(title, parts, legend or series)


def line(title: str, points: Sequence[tuple[str, int]]) -> Markup:
    maximum = max([value for _, value in points] + [1])
    step = (WIDTH - PAD_LEFT) / max(len(points), 1)
    scale = _scale(maximum)
    parts = _axis(maximum, [label[5:] for label, _ in points], step)
    coordinates = " ".join(f"{PAD_LEFT + step * i + step / 2:.1f},{HEIGHT - PAD_BOTTOM - v * scale:.1f}"
                           for i, (_, v) in enumerate(points))
    parts.append(f'<polyline points="{coordinates}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>')
    parts += [f'<circle cx="{PAD_LEFT + step * i + step / 2:.1f}" cy="{HEIGHT - PAD_BOTTOM - v * scale:.1f}" r="2.5" '
              f'fill="{PALETTE[0]}"><title>{escape(label)}: {v}</title></circle>'
              for i, (label, v) in enumerate(points)]
    return _svg(title, parts)


def horizontal_bars(title: str, values: dict[str, int]) -> Markup:
    rows = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    height = max(len(rows), 1) * 22 + 10
    maximum = max([v for _, v in rows] + [1])
    width = WIDTH - 200
    parts = []
    for index, (label, value) in enumerate(rows):
        y = 5 + index * 22
        parts.append(f'<text x="150" y="{y + 13}" text-anchor="end" font-size="11">{escape(label)}</text>'
                     f'<rect x="156" y="{y}" width="{max(value / maximum * width, 1):.1f}" height="16" '
                     f'fill="{PALETTE[0]}"/><text x="{160 + value / maximum * width:.1f}" y="{y + 13}" '
                     f'font-size="11">{value}</text>')
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" role="img" class="chart" '
                  f'aria-label="{escape(title)}"><title>{escape(title)}</title>' + "".join(parts) + "</svg>")


def waterfall(title: str, steps: Sequence[tuple[str, float]]) -> Markup:
    """Match weights as a waterfall: each comparison moves the running total up or down."""
    totals, running = [], 0.0
    for _, weight in steps:
        totals.append((running, running + weight))
        running += weight
    low = min([0.0] + [min(a, b) for a, b in totals])
    high = max([0.0] + [max(a, b) for a, b in totals])
    span = (high - low) or 1.0
    row, label_width, width = 22, 170, WIDTH - 230
    parts = []

    def x(value: float) -> float:
        return label_width + (value - low) / span * width

    parts.append(f'<line x1="{x(0):.1f}" y1="0" x2="{x(0):.1f}" y2="{row * len(steps) + 4}" stroke="#888"/>')
    for index, ((label, weight), (start, end)) in enumerate(zip(steps, totals)):
        y = 4 + index * row
        colour = PALETTE[2] if weight >= 0 else PALETTE[1]
        parts.append(f'<text x="{label_width - 6}" y="{y + 13}" text-anchor="end" font-size="11">{escape(label)}</text>'
                     f'<rect x="{min(x(start), x(end)):.1f}" y="{y}" width="{max(abs(x(end) - x(start)), 1):.1f}" '
                     f'height="16" fill="{colour}"/><text x="{max(x(start), x(end)) + 4:.1f}" y="{y + 13}" '
                     f'font-size="11">{weight:+.2f}</text>')
    parts.append(f'<text x="{label_width - 6}" y="{4 + len(steps) * row + 13}" text-anchor="end" font-size="11" '
                 f'font-weight="bold">= {running:+.2f}</text>')
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {row * (len(steps) + 1) + 8}" '
                  f'role="img" class="chart" aria-label="{escape(title)}"><title>{escape(title)}</title>'
                  + "".join(parts) + "</svg>")
