"""Study: could another exact statistic lift the real-text section-mix verdict above the
peers'? (Not part of ``make bench``.)

On the real-text ``section_mix`` scenario (python's share 12.5% -> 25%) the verdict detects
0.80 of the runs, ``energy`` alone 0.87, dcor's energy test 0.88 (benchmarks/RESULTS.md). The
projection family's decision metrics barely see this shift, so the verdict is about the
kernel family at its share of alpha: 2/5 x 0.05 = 0.02. A statistic that closed the gap would
need the kernel family's power at 0.02 to reach the peers' at 0.05. Three exact routes, each
measured beside ``energy`` on the detection part's pairs (pair seed 10,000 + s), 500
permutations per run from seed s: the same permutations of the pooled rows for every route
that permutes all rows, and permutations of the held-out rows with the current window for the
cluster shares::

    .venv/bin/python benchmarks/study_section_mix.py --seeds 300 --jobs 2

- *energy*: the full-dimension energy distance of the whole windows (every reference row
  against the current window), as the kernel family's ``energy`` in a permutation check.
- *pooled PC energy k*: the energy distance of the scores on the top k principal components
  of the pooled rows (both windows, sides ignored: a label-free projection, so the
  permutation test stays exact), k = 5, 10, 20, 50.
- *cluster shares K*: k-means with K clusters on the reference's anchors (its fit rows,
  ``Reference.fit(..., seed=s)``); each held-out or current row takes its nearest centre; the
  chi-square distance of the two sides' cluster shares, sum_k (c_k - h_k)^2 / pooled_k,
  permuting the held-out rows with the current window (exact: the clusters are fitted on rows
  that are never tested), K = 8, 16.
- *kNN k*: Schilling's (1986) nearest-neighbour count, the number of (row, its k nearest
  pooled rows) pairs on the same side, permuting all rows (the kNN graph ignores the sides),
  k = 10, 20.

Each route's rejection rate is printed at 0.05 (``@5``) and at 0.02 (``@2``, the kernel
family's share of alpha in the verdict), with the verdict of ``compare`` (defaults, seed s).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _scenarios as scenarios  # noqa: E402
from _study import run_cases  # noqa: E402

from embdrift.projection import FrozenPCA  # noqa: E402
from embdrift.reference import Reference  # noqa: E402
from embdrift.stats.permutation import permutation_masks, rank_p_values  # noqa: E402
from embdrift.stats.twosample import EnergyStatistic, pairwise_sq_distances  # noqa: E402

__all__ = ["main"]

LEVELS = (("@5", 0.05), ("@2", 0.02))
PERMUTATIONS = 500
POOLED_COMPONENTS = (5, 10, 20, 50)
CLUSTERS = (8, 16)
NEIGHBOURS = (10, 20)
CASES = (
    ("real", "section_mix"),
    ("real", "new_section"),
    ("real", "none"),
    ("synthetic", "new_cluster"),
    ("synthetic", "none"),
)


def cluster_share_values(labels: np.ndarray, masks: np.ndarray, n_clusters: int) -> np.ndarray:
    """Chi-square distance sum_k (c_k - h_k)^2 / pooled_k of the cluster shares of the two
    sides, per assignment in ``masks`` (B + 1, N), 1 marking the reference side."""
    onehot = np.zeros((labels.size, n_clusters))
    onehot[np.arange(labels.size), labels] = 1.0
    totals = onehot.sum(axis=0)
    held = masks.astype(np.float64) @ onehot
    n = masks.sum(axis=1, dtype=np.float64)[:, None]
    diff = (totals - held) / (labels.size - n) - held / n
    weights = np.divide(labels.size, totals, out=np.zeros_like(totals), where=totals > 0)
    return (diff * diff * weights).sum(axis=1)


def knn_same_side(pooled: np.ndarray, masks: np.ndarray, k: int) -> np.ndarray:
    """Schilling's count: pairs (row, one of its k nearest other pooled rows) on the same side,
    per assignment in ``masks`` (B + 1, N)."""
    sq = pairwise_sq_distances(pooled)
    np.fill_diagonal(sq, np.inf)
    nearest = np.argpartition(sq, k, axis=1)[:, :k]
    side = masks > 0.5
    return (side[:, :, None] == side[:, nearest]).sum(axis=(1, 2)).astype(np.float64)


def p_value(values: np.ndarray) -> float:
    """Permutation p-value of row 0 of ``values`` (B + 1,), larger meaning drift."""
    return float(rank_p_values(values[:, None])[0, 0])


def rejections(dataset: str, scenario: str, seeds: range, n: int) -> dict[str, int]:
    """Rejection counts per route and level over ``seeds``."""
    real = scenarios.RealText.load() if dataset == "real" else None
    hits: dict[str, int] = {}
    for seed in seeds:
        if real is not None:
            reference, current = real.pair(scenario, n, 10_000 + seed)
        else:
            reference, current = scenarios.synthetic_pair(scenario, n, 10_000 + seed)
        rng = np.random.default_rng(seed)
        pooled = np.vstack([reference, current]).astype(np.float64)
        masks = permutation_masks(reference.shape[0], current.shape[0], PERMUTATIONS, rng)
        p = {"energy": p_value(EnergyStatistic(pooled).values(masks))}
        for k in POOLED_COMPONENTS:
            scores = FrozenPCA(n_components=k).fit(pooled).transform(pooled)
            p[f"pooled PC energy {k}"] = p_value(EnergyStatistic(scores).values(masks))
        fitted = Reference.fit(reference, seed=seed)
        tested = np.vstack([fitted.sample, current])
        held_masks = permutation_masks(fitted.sample.shape[0], current.shape[0], PERMUTATIONS, rng)
        for n_clusters in CLUSTERS:
            km = KMeans(n_clusters, n_init=3, random_state=seed).fit(fitted.anchors)
            labels = km.predict(tested)
            values = cluster_share_values(labels, held_masks, n_clusters)
            p[f"cluster shares {n_clusters}"] = p_value(values)
        for k in NEIGHBOURS:
            p[f"kNN {k}"] = p_value(knn_same_side(pooled, masks, k))
        verdict = fitted.compare(current, seed=seed).drifted
        hits["verdict"] = hits.get("verdict", 0) + bool(verdict)
        for route, value in p.items():
            for tag, level in LEVELS:
                key = f"{route} {tag}"
                hits[key] = hits.get(key, 0) + bool(value <= level)
    return hits


def main(argv: list[str] | None = None) -> int:
    return run_cases(rejections, CASES, description=__doc__.split("\n\n")[0], argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
