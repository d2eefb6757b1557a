"""The outcomes figure: drift over time with its spikes shaded, each outcome beneath on the
shared time axis, and the ranking of outcomes by how much they degrade during spikes.

Built on ``matplotlib.figure.Figure`` (no pyplot state); write it with
:func:`embdrift.report.plots.save_figure` for byte-identical SVGs.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from embdrift.outcomes import OutcomeEffect, OutcomesResult

__all__ = ["outcomes_figure"]

_DRIFT = "#444444"
_BAD = "#d62728"
_OK = "#1f77b4"
_SPIKE = "#ff7f0e"


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) index pairs of the True runs of ``mask``."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _label(e: OutcomeEffect, bucket_seconds: float) -> str:
    if e.status != "ok" or e.effect is None:
        return f"{e.name}: {e.status}"
    hours = (e.lag or 0) * bucket_seconds / 3600.0
    verdict = "DEGRADED" if e.degraded else "not degraded"
    return (
        f"{e.name} ({'higher' if e.bad_direction == 'up' else 'lower'} is worse): {verdict},"
        f" {e.effect:+.3g} [{e.ci_low:+.3g}, {e.ci_high:+.3g}] at lag {e.lag}"
        f" ({hours:g} h), p = {e.p_value:.3g}"
    )


def outcomes_figure(result: OutcomesResult, *, width: float = 10.0) -> Figure:
    """Drift panel, one panel per outcome (same time axis), and the ranking panel.

    Spike buckets are shaded in every time panel; in each outcome panel the shading is
    moved by that outcome's lag, so the shaded spans are where the effect was measured. The
    ranking panel shows the standardised degradation (residual standard deviations, > 0 is
    worse) with its interval, most degraded at the top.
    """
    names = list(result.outcome_values)
    n_rows = len(names) + 2
    heights = [1.4] + [1.0] * len(names) + [0.45 * max(len(names), 2) + 0.6]
    # A fixed layout (no constrained layout): its solver can differ in the last bits between
    # runs, which changes the clip-path ids and breaks byte-identical SVGs.
    fig_height = sum(heights) * 1.15 + 1.2
    fig = Figure(figsize=(width, fig_height))
    grid = fig.add_gridspec(
        n_rows,
        1,
        height_ratios=heights,
        left=1.6 / width,
        right=1.0 - 0.25 / width,
        top=1.0 - 0.35 / fig_height,
        bottom=0.55 / fig_height,
        hspace=0.55,
    )
    times = result.times.astype("datetime64[s]")
    step = np.timedelta64(int(round(result.bucket_seconds)), "s")
    ax0 = fig.add_subplot(grid[0])
    ax0.plot(times, result.drift, color=_DRIFT, lw=0.9)
    if math.isfinite(result.spike_threshold):
        ax0.axhline(result.spike_threshold, color=_SPIKE, lw=0.8, ls="--", label="spike threshold")
        ax0.legend(loc="upper right", fontsize=7, frameon=False)
    spike_runs = _runs(result.spikes)
    for a, b in spike_runs:
        ax0.axvspan(times[a], times[b - 1] + step, color=_SPIKE, alpha=0.25, lw=0)
    ax0.set_ylabel("drift")
    ax0.set_title(
        f"Drift spikes ({int(result.spikes.sum())} of {result.times.size} buckets of"
        f" {result.bucket_seconds / 3600.0:g} h) and outcomes",
        fontsize=10,
        loc="left",
    )
    effects = {e.name: e for e in result.ranking}
    axes = [ax0]
    for i, name in enumerate(names):
        ax = fig.add_subplot(grid[i + 1], sharex=ax0)
        e = effects[name]
        color = _BAD if e.degraded else _OK
        ax.plot(times, result.outcome_values[name], color=color, lw=0.8)
        lag = e.lag or 0
        for a, b in spike_runs:
            lo, hi = min(a + lag, times.size - 1), min(b - 1 + lag, times.size - 1)
            ax.axvspan(times[lo], times[hi] + step, color=_SPIKE, alpha=0.2, lw=0)
        ax.set_ylabel(name, fontsize=8)
        ax.set_title(_label(e, result.bucket_seconds), fontsize=8, loc="left")
        axes.append(ax)
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    axes[-1].tick_params(axis="x", labelsize=7)
    ax_r = fig.add_subplot(grid[-1])
    usable = [e for e in result.ranking if e.status == "ok" and e.standardized_effect is not None]
    ypos = np.arange(len(usable))[::-1]
    for y, e in zip(ypos.tolist(), usable, strict=True):
        std = float(e.standardized_effect or 0.0)
        if e.effect and e.ci_low is not None and e.ci_high is not None and e.effect != 0:
            factor = std / e.effect
            c_lo, c_hi = sorted((e.ci_low * factor, e.ci_high * factor))
        else:
            c_lo = c_hi = std
        color = _BAD if e.degraded else _OK
        ax_r.barh(y, std, color=color, alpha=0.8, height=0.6)
        if math.isfinite(c_lo) and math.isfinite(c_hi):
            ax_r.plot([c_lo, c_hi], [y, y], color="black", lw=1.0)
    ax_r.set_yticks(ypos, [f"{i + 1}. {e.name}" for i, e in enumerate(usable)], fontsize=8)
    ax_r.axvline(0.0, color="black", lw=0.6)
    ax_r.set_xlabel(
        "degradation during spikes (residual sd; > 0 is worse) with interval", fontsize=8
    )
    ax_r.set_title("Ranking: most to least degraded", fontsize=10, loc="left")
    missing = [e.name for e in result.ranking if e.status != "ok"]
    if missing:
        ax_r.text(
            0.99,
            0.02,
            "not tested: " + ", ".join(missing),
            transform=ax_r.transAxes,
            ha="right",
            va="bottom",
            fontsize=7,
        )
    return fig
