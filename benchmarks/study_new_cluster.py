"""Study: which statistic raises embdrift's power on a 5% new cluster at n=500 per side?

Not part of ``make bench``. Evaluates candidate statistics on exactly the data and split that
``Reference.fit`` + ``compare`` use (fit rows / held-out test rows; permutation masks shared by
every statistic, so every single test and every min-p combination is exact), and prints power on
``new_cluster`` and the false-alarm rate on ``none``::

    .venv/bin/python benchmarks/study_new_cluster.py --seeds 200 --null-seeds 400

Candidates: the nine current metrics; MMD at bandwidth multiples of the median heuristic; an
*outlier-tail* count: score every pooled row by its distance to the k-th nearest *fit* row (or
its residual norm outside the top-k PCs), and count current-side rows among the pooled top q.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _scenarios as scenarios  # noqa: E402

from embdrift import reference as reference_module  # noqa: E402
from embdrift.reference import Reference  # noqa: E402
from embdrift.stats.permutation import combine_min_p, permutation_masks  # noqa: E402
from embdrift.stats.twosample import KernelMMD, pairwise_sq_distances  # noqa: E402

__all__ = ["main"]


class TailCount:
    """Number of current-side rows among the pooled rows whose score is in the top ``q``
    share (the threshold is a pooled quantile, so it is the same for every assignment)."""

    def __init__(self, scores: np.ndarray, *, q: float) -> None:
        threshold = np.quantile(scores, 1.0 - q)
        self.indicator = (scores > threshold).astype(np.float64)

    def values(self, masks: np.ndarray) -> np.ndarray:
        return (1.0 - masks) @ self.indicator

    def test_statistic(self, values: np.ndarray) -> np.ndarray:
        return values


class MeanDifference:
    """Squared distance between the side means, ``||mean_ref - mean_cur||²`` (the linear-kernel
    MMD), optionally with every coordinate divided by its fit-row standard deviation."""

    def __init__(self, pooled: np.ndarray, scale: np.ndarray | None = None) -> None:
        self.pooled = pooled if scale is None else pooled / scale

    def values(self, masks: np.ndarray) -> np.ndarray:
        n = masks[0].sum()
        m = masks.shape[1] - n
        diff = (masks @ self.pooled) / n - ((1.0 - masks) @ self.pooled) / m
        return np.einsum("bd,bd->b", diff, diff)

    def test_statistic(self, values: np.ndarray) -> np.ndarray:
        return values


class MeanScore:
    """Mean score on the current side (a one-sided location test of an outlier score)."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def values(self, masks: np.ndarray) -> np.ndarray:
        m = masks.shape[1] - masks[0].sum()
        return ((1.0 - masks) @ self.scores) / m

    def test_statistic(self, values: np.ndarray) -> np.ndarray:
        return values


def knn_scores(pooled: np.ndarray, fit_rows: np.ndarray, k: int) -> np.ndarray:
    d2 = pairwise_sq_distances(pooled, fit_rows)
    return np.sqrt(np.partition(d2, k - 1, axis=1)[:, k - 1])


class ReferenceMetric:
    """One of the Reference's own metrics as a statistic over masks: the arithmetic of
    ``Reference.compare`` on its exact path (its private evaluation routine)."""

    def __init__(self, ref: Reference, current: np.ndarray, rows: object, name: str) -> None:
        self.ref, self.current, self.rows, self.name = ref, current, rows, name

    def values(self, masks: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(0)
        out, _ = self.ref._evaluate(
            [self.name], self.current, self.rows, masks, exact=True, rng=rng
        )
        return out[self.name]

    def test_statistic(self, values: np.ndarray) -> np.ndarray:
        return np.abs(np.log(values)) if self.name == "spread_ratio" else values


def candidates(ref: Reference, fit_rows: np.ndarray, current: np.ndarray) -> dict[str, object]:
    current = np.ascontiguousarray(current, dtype=np.float32)
    rows = type(ref._test_rows).join(ref._test_rows, ref._rows(current))
    stats: dict[str, object] = {
        name: ReferenceMetric(ref, current, rows, name) for name in reference_module.METRICS
    }
    pooled = np.vstack([ref.sample, current])
    for mult in (0.5, 0.25):
        stats[f"mmd_h*{mult}"] = KernelMMD(pooled, bandwidth=mult * ref.bandwidth)
    for k in (1, 5):
        s = knn_scores(pooled, fit_rows, k)
        stats[f"knn{k}_mean"] = MeanScore(s)
        for q in (0.05, 0.02):
            stats[f"knn{k}_tail{q}"] = TailCount(s, q=q)
    stats["mean_diff"] = MeanDifference(pooled)
    stats["mean_diff_std"] = MeanDifference(pooled, fit_rows.std(axis=0, ddof=1) + 1e-12)
    # mean difference outside the top-k principal subspace of the fit rows, where the cluster
    # structure lives; what is left is mostly isotropic noise, so a small shift stands out
    centred = fit_rows - fit_rows.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    for k in (10, 50, 100):
        basis = vt[:k]
        resid = pooled - (pooled @ basis.T) @ basis
        stats[f"mean_diff_resid{k}"] = MeanDifference(resid)
    resid = ref.projection.residual_norm(pooled)
    stats["resid_tail0.05"] = TailCount(resid, q=0.05)
    stats["resid_tail0.02"] = TailCount(resid, q=0.02)
    return stats


NINE = list(reference_module.METRICS)
COMBOS = {
    "current 9 (min-p)": NINE,
    "9 + knn1_tail0.02": [*NINE, "knn1_tail0.02"],
    "mmd + mean_diff_resid50 + spread_ratio + recon + knn1_tail0.02": [
        "mmd",
        "mean_diff_resid50",
        "spread_ratio",
        "reconstruction_error",
        "knn1_tail0.02",
    ],
    "mmd + mean_diff + spread_ratio + recon + knn1_tail0.02": [
        "mmd",
        "mean_diff",
        "spread_ratio",
        "reconstruction_error",
        "knn1_tail0.02",
    ],
    "mmd + sliced_w + mean_diff + spread_ratio + recon + knn1_tail0.02": [
        "mmd",
        "sliced_wasserstein",
        "mean_diff",
        "spread_ratio",
        "reconstruction_error",
        "knn1_tail0.02",
    ],
    "9 + knn1_mean": [*NINE, "knn1_mean"],
    "9 + knn1_tail0.02 + resid_tail0.02": [*NINE, "knn1_tail0.02", "resid_tail0.02"],
    "mmd + mean_shift + spread_ratio + knn1_tail0.02": [
        "mmd",
        "mean_shift",
        "spread_ratio",
        "knn1_tail0.02",
    ],
    "mmd + sliced_w + mean_shift + spread_ratio + recon + knn1_tail0.02": [
        "mmd",
        "sliced_wasserstein",
        "mean_shift",
        "spread_ratio",
        "reconstruction_error",
        "knn1_tail0.02",
    ],
    "9 + knn1_tail0.05": [*reference_module.METRICS, "knn1_tail0.05"],
    "9 + knn5_tail0.05": [*reference_module.METRICS, "knn5_tail0.05"],
    "9 + knn1_tail0.05 + mmd_h*0.5": [
        *reference_module.METRICS,
        "knn1_tail0.05",
        "mmd_h*0.5",
    ],
    "mmd + mean_shift + spread_ratio + knn1_tail0.05": [
        "mmd",
        "mean_shift",
        "spread_ratio",
        "knn1_tail0.05",
    ],
    "mmd + energy + mean_shift + spread_ratio + knn5_tail0.05": [
        "mmd",
        "energy",
        "mean_shift",
        "spread_ratio",
        "knn5_tail0.05",
    ],
}


def run(
    scenario: str, seeds: int, *, n: int, perms: int, fit_fraction: float, real: object = None
) -> dict:
    hits: dict[str, list[bool]] = {}
    pair = scenarios.synthetic_pair if real is None else real.pair  # type: ignore[attr-defined]
    for seed in range(seeds):
        x, y = pair(scenario, n, 10_000 + seed)
        ref = Reference.fit(x, seed=seed, fit_fraction=fit_fraction)
        # the fit rows, rebuilt exactly as Reference.fit splits them
        order = np.random.default_rng(seed).permutation(x.shape[0])
        fit_rows = x[np.sort(order[: ref.n_fit])]
        stats = candidates(ref, fit_rows, y)
        rng = np.random.default_rng([seed, 1])
        masks = permutation_masks(ref.sample.shape[0], y.shape[0], perms, rng)
        names = list(stats)
        scores = np.column_stack(
            [stats[s].test_statistic(stats[s].values(masks)) for s in names]  # type: ignore[attr-defined]
        )
        single = combine_min_p(scores, alpha=0.05).p_values
        for j, name in enumerate(names):
            hits.setdefault(name, []).append(bool(single[j] <= 0.05))
        for combo, members in COMBOS.items():
            cols = [names.index(m) for m in members]
            p = combine_min_p(scores[:, cols], alpha=0.05).combined_p_value
            hits.setdefault(f"[{combo}]", []).append(p <= 0.05)
    return {k: float(np.mean(v)) for k, v in hits.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=200)
    p.add_argument("--null-seeds", type=int, default=400)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--permutations", type=int, default=199)
    p.add_argument("--fit-fraction", type=float, default=0.5)
    p.add_argument("--scenarios", nargs="+", default=["new_cluster"])
    p.add_argument("--real", action="store_true", help="real-text scenarios instead")
    args = p.parse_args()
    t0 = time.perf_counter()
    real = scenarios.RealText.load() if args.real else None
    common = dict(n=args.n, perms=args.permutations, fit_fraction=args.fit_fraction, real=real)
    table = {sc: run(sc, args.seeds, **common) for sc in args.scenarios}  # type: ignore[arg-type]
    table["none"] = run("none", args.null_seeds, **common)  # type: ignore[arg-type]
    print(
        f"{'real' if args.real else 'synthetic'} n={args.n} fit_fraction={args.fit_fraction}"
        f" B={args.permutations} seeds={args.seeds}/{args.null_seeds}"
        f" ({time.perf_counter() - t0:.0f} s)"
    )
    print(f"{'statistic':70s}" + "".join(f"{sc:>13s}" for sc in table))
    for name in table["none"]:
        print(f"{name:70s}" + "".join(f"{table[sc][name]:13.3f}" for sc in table))


if __name__ == "__main__":
    main()
