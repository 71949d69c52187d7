"""Small inline SVG charts built on the server from the samples it keeps.

The SVG is made of numbers only (coordinates and counts), never of text coming from a broker,
so it is safe to mark up; it uses attributes, not ``style``, to stay within the CSP.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from markupsafe import Markup

WIDTH = 240
HEIGHT = 44


def rate_series(samples: Sequence[tuple[float, int]]) -> list[tuple[float, float]]:
    """Per-second rates between consecutive ``(unix time, cumulative count)`` samples.

    A counter that went down (a worker restarted) counts as 0 for that step, not a negative
    rate. Returns ``(time of the later sample, events per second)``.
    """
    out: list[tuple[float, float]] = []
    for (t0, c0), (t1, c1) in pairwise(samples):
        if t1 <= t0:
            continue
        out.append((t1, max(0, c1 - c0) / (t1 - t0)))
    return out


def sparkline(
    points: Sequence[tuple[float, float]],
    *,
    span: float,
    now: float,
    label: str,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Markup:
    """An SVG polyline of ``(unix time, value)`` over the last ``span`` seconds ending ``now``.

    The y axis starts at 0 and ends at the largest value shown; ``label`` becomes the
    accessible title (escaped).
    """
    shown = [(t, v) for t, v in points if now - span <= t <= now]
    top = max((v for _, v in shown), default=0.0)
    scale_y = (height - 4) / top if top > 0 else 0.0
    coords = " ".join(
        f"{(t - (now - span)) / span * width:.1f},{height - 2 - v * scale_y:.1f}" for t, v in shown
    )
    title = Markup.escape(label)
    line = (
        f'<polyline points="{coords}" fill="none" stroke="currentColor" stroke-width="1.5" vector-effect="non-scaling-stroke"/>'
        if len(shown) > 1
        else ""
    )
    return Markup(
        f'<svg class="spark" viewBox="0 0 {width} {height}" preserveAspectRatio="none"'
        f' role="img" aria-label="{title}"><title>{title}</title>'
        f'<line x1="0" y1="{height - 1}" x2="{width}" y2="{height - 1}" stroke="currentColor"'
        f' stroke-opacity="0.25" vector-effect="non-scaling-stroke"/>{line}</svg>'
    )
