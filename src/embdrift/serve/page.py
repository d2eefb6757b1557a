"""The live page at ``GET /``: per stream, the latest verdict, drift over time with the outcome
rates beneath on the same time axis, the PCA scatter of the latest window against the
reference, and the new clusters with example ids.

Self-contained: one HTML document (a jinja2 template shipped with the package), inline SVG
drawn here from the stream history, a few lines of inline script (allowed by a per-response
nonce in the Content Security Policy) that fetch the page again every ``refresh`` seconds and
swap its content; no external URL of any kind.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import jinja2
import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from embdrift.errors import InvalidParameterError
from embdrift.serve.auth import require_read
from embdrift.serve.registry import StreamSnapshot, WindowSummary

__all__ = [
    "Chart",
    "Series",
    "StreamView",
    "content_security_policy",
    "live_page",
    "render_page",
    "router",
    "stream_view",
]

#: Colours of the metric series, the outcome series and the scatter (colour-blind safe, Okabe-Ito).
PALETTE = (
    "#0072b2",
    "#e69f00",
    "#009e73",
    "#cc79a7",
    "#56b4e9",
    "#d55e00",
    "#f0e442",
    "#999999",
    "#882255",
    "#44aa99",
    "#332288",
    "#aa4499",
)
#: Colour of the combined decision (drawn bold).
COMBINED_COLOR = "#000000"
#: Largest -log10(p) drawn (p-values below 1e-4 are drawn at the top edge).
_MAX_NEG_LOG_P = 4.0

router = APIRouter()


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a chart: SVG polyline points and, for short series, its dots."""

    name: str
    color: str
    points: str
    dots: tuple[tuple[float, float], ...] = ()
    width: float = 1.2
    dashed: bool = False


@dataclass(frozen=True, slots=True)
class Chart:
    """An SVG line chart laid out in pixels (``x0..x1`` by ``y1..y0``, y grows downwards)."""

    width: int
    height: int
    x0: float
    x1: float
    y0: float
    y1: float
    x_ticks: tuple[tuple[float, str], ...]
    y_ticks: tuple[tuple[float, str], ...]
    series: tuple[Series, ...]
    hlines: tuple[tuple[float, str], ...] = ()
    bands: tuple[tuple[float, float], ...] = ()
    y_label: str = ""


@dataclass(frozen=True, slots=True)
class StreamView:
    """Everything the template shows for one stream (plain strings and numbers)."""

    name: str
    verdict: str  # "drifted", "ok" or "pending"
    alert: bool
    p_value: str
    count: int
    windows: int
    drift_windows: int
    last_ingest: str
    reference_id: str
    window_label: str
    metrics: tuple[dict[str, str], ...]
    drift_chart: Chart | None
    outcome_chart: Chart | None
    scatter: dict[str, Any] | None
    new_clusters: tuple[dict[str, Any], ...]
    example_ids: tuple[str, ...]
    new_cluster_share: str
    legend: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    outcome_legend: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}g}"


def _percent(value: Any) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "–"
    return f"{value:.1%}"


def _clock(seconds: float, *, fine: bool = False) -> str:
    """UTC wall-clock time; tenths of a second when ticks are closer than a second."""
    stamp = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    return stamp.strftime("%H:%M:%S.%f")[:-5] if fine else stamp.strftime("%H:%M:%S")


def _ago(seconds: float | None, now: float) -> str:
    if seconds is None:
        return "never"
    delta = max(0.0, now - seconds)
    if delta < 120:
        return f"{delta:.0f} s ago"
    if delta < 7200:
        return f"{delta / 60:.0f} min ago"
    return f"{delta / 3600:.1f} h ago"


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round values in [lo, hi] (steps of 1, 2 or 5 times a power of ten)."""
    span = hi - lo
    if span <= 0 or not math.isfinite(span):
        return [lo]
    raw = span / max(n, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = min((m * power for m in (1, 2, 5, 10) if m * power >= raw), default=raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _line_chart(
    times: np.ndarray,
    lines: Sequence[tuple[str, np.ndarray, float, bool]],
    *,
    x_domain: tuple[float, float],
    y_domain: tuple[float, float],
    hlines: Sequence[tuple[float, str]] = (),
    bands: Sequence[bool] = (),
    y_label: str = "",
    y_format: str = "{:.2g}",
    width: int = 760,
    height: int = 170,
) -> Chart:
    """Lay out ``lines`` (name, values, stroke width, dashed) over ``times`` (seconds)."""
    left, right, top, bottom = 48.0, 12.0, 8.0, 22.0
    x0, x1, y0, y1 = left, width - right, height - bottom, top
    tlo, thi = x_domain
    vlo, vhi = y_domain

    def sx(t: float) -> float:
        return x0 + (t - tlo) / (thi - tlo) * (x1 - x0)

    def sy(v: float) -> float:
        v = min(max(v, vlo), vhi)
        return y0 - (v - vlo) / (vhi - vlo) * (y0 - y1)

    series = []
    colors = iter(PALETTE * (len(lines) // len(PALETTE) + 1))
    for name, values, stroke, dashed in lines:
        color = COMBINED_COLOR if name == "combined" else next(colors)
        ok = np.isfinite(values)
        pts = [
            (round(sx(t), 1), round(sy(v), 1)) for t, v in zip(times[ok], values[ok], strict=True)
        ]
        if not pts:
            continue
        series.append(
            Series(
                name=name,
                color=color,
                points=" ".join(f"{x},{y}" for x, y in pts),
                dots=tuple(pts) if len(pts) <= 60 else (),
                width=stroke,
                dashed=dashed,
            )
        )
    # Shade the windows that drifted: half-way to each neighbour.
    shaded = []
    xs = [sx(t) for t in times]
    for i, flag in enumerate(bands):
        if flag:
            a = (xs[i - 1] + xs[i]) / 2 if i > 0 else max(x0, xs[i] - 3)
            b = (xs[i] + xs[i + 1]) / 2 if i + 1 < len(xs) else min(x1, xs[i] + 3)
            shaded.append((round(a, 1), round(max(b - a, 1.0), 1)))
    ticks = _nice_ticks(tlo, thi, 6)
    fine = len(ticks) > 1 and ticks[1] - ticks[0] < 1.0
    x_ticks = tuple((round(sx(t), 1), _clock(t, fine=fine)) for t in ticks)
    y_ticks = tuple((round(sy(v), 1), y_format.format(v)) for v in _nice_ticks(vlo, vhi, 4))
    return Chart(
        width=width,
        height=height,
        x0=x0,
        x1=x1,
        y0=y0,
        y1=y1,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        series=tuple(series),
        hlines=tuple((round(sy(v), 1), label) for v, label in hlines),
        bands=tuple(shaded),
        y_label=y_label,
    )


def _neg_log_p(p: float | None) -> float:
    if p is None or not math.isfinite(p):
        return math.nan
    return min(-math.log10(max(p, 10.0**-_MAX_NEG_LOG_P)), _MAX_NEG_LOG_P)


def _x_domain(history: Sequence[WindowSummary]) -> tuple[float, float]:
    lo, hi = history[0].closed_at, history[-1].closed_at
    pad = max((hi - lo) * 0.02, 1.0)
    return lo - pad, hi + pad


def _drift_chart(history: Sequence[WindowSummary]) -> tuple[Chart, tuple[tuple[str, str], ...]]:
    """-log10 p over time: the combined decision p (bold) and each metric's, with alpha."""
    times = np.array([w.closed_at for w in history])
    alpha = history[-1].window.result.alpha
    names = list(history[-1].window.result.metrics)
    lines: list[tuple[str, np.ndarray, float, bool]] = [
        ("combined", np.array([_neg_log_p(w.window.result.p_value) for w in history]), 2.6, False)
    ]
    for name in names:
        values = [
            _neg_log_p(w.window.result.metrics[name].p_value)
            if name in w.window.result.metrics
            else math.nan
            for w in history
        ]
        lines.append((name, np.array(values), 1.0, False))
    top = max(_MAX_NEG_LOG_P, _neg_log_p(alpha) + 0.5)
    chart = _line_chart(
        times,
        lines,
        x_domain=_x_domain(history),
        y_domain=(0.0, top),
        hlines=[(_neg_log_p(alpha), f"alpha = {alpha:g}")],
        bands=[w.window.result.drifted for w in history],
        y_label="−log10 p",
        y_format="{:.0f}",
    )
    legend = tuple((s.name, s.color) for s in chart.series)
    return chart, legend


def _outcome_chart(
    history: Sequence[WindowSummary],
) -> tuple[Chart | None, tuple[tuple[str, str], ...]]:
    names = sorted({k for w in history for k in w.outcome_rates})
    if not names:
        return None, ()
    times = np.array([w.closed_at for w in history])
    lines = [
        (n, np.array([w.outcome_rates.get(n, math.nan) for w in history]), 1.6, False)
        for n in names
    ]
    finite = np.concatenate([v[np.isfinite(v)] for _, v, _, _ in lines])
    lo = min(0.0, float(finite.min())) if finite.size else 0.0
    hi = max(1.0, float(finite.max())) if finite.size else 1.0
    chart = _line_chart(
        times,
        lines,
        x_domain=_x_domain(history),
        y_domain=(lo, hi),
        bands=[w.window.result.drifted for w in history],
        y_label="outcome rate",
        height=140,
    )
    return chart, tuple((s.name, s.color) for s in chart.series)


def _scatter(snap: StreamSnapshot, *, size: int = 360) -> dict[str, Any] | None:
    """The latest window's reservoir rows and the reference sample on the frozen PC1/PC2."""
    pts = np.asarray(snap.points, dtype=np.float64).reshape(-1, 2)
    ref = np.asarray(snap.reference_points, dtype=np.float64).reshape(-1, 2)
    if pts.shape[0] == 0:
        return None
    both = np.vstack([pts, ref])
    # Robust box: the 0.5-99.5% range of all points, outliers pinned to the edge.
    lo = np.quantile(both, 0.005, axis=0)
    hi = np.quantile(both, 0.995, axis=0)
    span = np.maximum(hi - lo, 1e-6)
    lo, hi = lo - 0.05 * span, hi + 0.05 * span
    m = 28.0

    def place(a: np.ndarray) -> list[tuple[float, float]]:
        x = m + (np.clip(a[:, 0], lo[0], hi[0]) - lo[0]) / (hi[0] - lo[0]) * (size - 2 * m)
        y = size - m - (np.clip(a[:, 1], lo[1], hi[1]) - lo[1]) / (hi[1] - lo[1]) * (size - 2 * m)
        return [(round(float(u), 1), round(float(v), 1)) for u, v in zip(x, y, strict=True)]

    labels = list(snap.point_labels) + [""] * (pts.shape[0] - len(snap.point_labels))
    ids = list(snap.point_ids) + [""] * (pts.shape[0] - len(snap.point_ids))
    placed = place(pts)
    current = [(x, y, i) for (x, y), lab, i in zip(placed, labels, ids, strict=True) if not lab]
    new = [(x, y, i, lab) for (x, y), lab, i in zip(placed, labels, ids, strict=True) if lab]
    return {
        "size": size,
        "margin": m,
        "reference": place(ref),
        "current": current,
        "new": new,
        "n_current": pts.shape[0],
        "n_reference": ref.shape[0],
    }


def stream_view(snap: StreamSnapshot, *, now: float) -> StreamView:
    """The template's view of one stream snapshot."""
    latest = snap.latest
    history = list(snap.history)
    metrics: tuple[dict[str, str], ...]
    examples: tuple[str, ...]
    if latest is None:
        verdict, p, metrics, label, examples, share = "pending", "–", (), "no window yet", (), "–"
    else:
        result = latest.window.result
        verdict = "drifted" if result.drifted else "ok"
        p = _fmt(result.p_value)
        metrics = tuple(
            {
                "name": name,
                "value": _fmt(m.value),
                "threshold": _fmt(m.threshold),
                "p_value": _fmt(m.p_value),
                "effect": _fmt(m.effect_size),
                "drifted": "yes" if m.drifted else "no",
            }
            for name, m in result.metrics.items()
        )
        w = latest.window
        label = (
            f"window {w.index}: rows {w.start}–{w.end}"
            if snap.mode == "count"
            else f"window {w.index}: {w.start} – {w.end}"
        )
        label += f", closed {_clock(latest.closed_at)} UTC, n = {result.n_current}"
        examples = tuple(w.example_ids)
        share = _percent(latest.new_cluster_share)
    drift_chart, legend = _drift_chart(history) if history else (None, ())
    outcome_chart, outcome_legend = _outcome_chart(history) if history else (None, ())
    clusters: tuple[dict[str, Any], ...] = ()
    if snap.explanation:
        clusters = tuple(
            {
                "label": str(c.get("label", "")),
                "size": c.get("size", ""),
                "share": _percent(c.get("share")),
                "examples": [str(e) for e in c.get("examples", [])][:10],
            }
            for c in snap.explanation.get("new_clusters", [])
        )
    return StreamView(
        name=snap.name,
        verdict=verdict,
        alert=snap.alert,
        p_value=p,
        count=snap.count,
        windows=snap.windows,
        drift_windows=snap.drift_windows,
        last_ingest=_ago(snap.last_ingest, now),
        reference_id=snap.reference_id,
        window_label=label,
        metrics=metrics,
        drift_chart=drift_chart,
        outcome_chart=outcome_chart,
        scatter=_scatter(snap),
        new_clusters=clusters,
        example_ids=examples,
        new_cluster_share=share,
        legend=legend,
        outcome_legend=outcome_legend,
    )


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("embdrift.serve", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def content_security_policy(nonce: str) -> str:
    """Nothing from anywhere, except this response's own inline style and script, and
    fetches of the page itself."""
    return (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}';"
        " connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none';"
        " frame-ancestors 'none'"
    )


def render_page(
    snapshots: Sequence[StreamSnapshot],
    *,
    refresh: int,
    nonce: str,
    now: float | None = None,
    fragment: bool = False,
) -> str:
    """The live page for ``snapshots`` (refreshing itself every ``refresh`` s; 0 = never);
    ``fragment``: only its ``<main>`` element (what the refresh script fetches)."""
    when = time.time() if now is None else now
    views = [stream_view(s, now=when) for s in snapshots]
    return (
        _environment()
        .get_template("page.html")
        .render(
            streams=views,
            refresh=refresh,
            nonce=nonce,
            fragment=fragment,
            generated=dt.datetime.fromtimestamp(when, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        )
    )


@router.get(
    "/",
    response_class=HTMLResponse,
    dependencies=[Depends(require_read)],
    tags=["page"],
    summary="Live page (self-contained HTML, refreshes itself)",
)
def live_page(request: Request, refresh: int = 10, fragment: bool = False) -> HTMLResponse:
    """Every stream's verdict, drift over time, outcomes, PCA scatter and new clusters.
    ``refresh``: seconds between updates (0 turns them off; at most 3600); ``fragment``: only
    the page's ``<main>`` element (what the page fetches to update itself)."""
    if isinstance(refresh, bool) or not 0 <= refresh <= 3600:
        raise InvalidParameterError(
            f"The 'refresh' parameter must be an int in [0, 3600] seconds; got {refresh}."
        )
    nonce = secrets.token_urlsafe(18)
    html = render_page(
        request.app.state.registry.snapshots(), refresh=refresh, nonce=nonce, fragment=fragment
    )
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": content_security_policy(nonce),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )
