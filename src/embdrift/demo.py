"""The post's figures: synthetic week 0 vs week 4 on a PCA frozen on week 0.

``run_demo`` is the one implementation behind ``embdrift demo`` and
``site/analysis/generate_all.py``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from embdrift.reference import Reference
from embdrift.report.plots import pc1_histogram_figures, pca_scatter_figure, save_figure
from embdrift.results import DriftResult
from embdrift.synthetic import demo_weeks

__all__ = ["DemoOutput", "FIGURES", "run_demo"]

FIGURES = ("embedding-drift-pca.svg", "pc1-week0.svg", "pc1-week4.svg")


@dataclass(frozen=True, slots=True)
class DemoOutput:
    """The demo's drift result and the files it wrote."""

    result: DriftResult
    figures: tuple[Path, ...]
    scores: Path


def run_demo(
    out: str | os.PathLike[str], *, seed: int = 0, n: int = 1500, n_permutations: int = 500
) -> DemoOutput:
    """Generate week 0 and week 4, fit a reference on week 0, compare week 4, and write the
    three figures and ``scores.json`` into ``out``."""
    out_dir = Path(out)
    week0, week4 = demo_weeks(n=n, seed=seed)
    reference = Reference.fit(week0, seed=seed)
    result = reference.compare(week4, seed=seed, n_permutations=n_permutations)
    ref_xy = reference.projection.standardize(week0)[:, :2]
    cur_xy = reference.projection.standardize(week4)[:, :2]
    scatter = pca_scatter_figure(
        ref_xy, cur_xy, labels=("week 0", "week 4"), title="Week 0 vs week 4 on the week-0 PCA"
    )
    hist0, hist4 = pc1_histogram_figures(ref_xy[:, 0], cur_xy[:, 0], labels=("week 0", "week 4"))
    paths = tuple(
        save_figure(fig, out_dir / name)
        for fig, name in zip((scatter, hist0, hist4), FIGURES, strict=True)
    )
    scores = out_dir / "scores.json"
    payload = result.to_dict()
    payload.pop("timings")  # wall times differ run to run; the file stays byte-stable
    scores.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return DemoOutput(result=result, figures=paths, scores=scores)
