"""Study: which combination of the decision metrics' permutation p-values gives the verdict
the most power, and does a smaller fit fraction help? (Not part of ``make bench``.)

Every rule below is a symmetric function of one permutation row's per-metric p-values, so
computed on the same permutation matrix each one is an exact test; only power differs. For each
scenario and ``fit_fraction`` this records the (B + 1, J) permutation scores of the decision
metrics once (``n_permutations`` = 499), then evaluates every rule on the first 200 rows
(B = 199) and on all 500 (B = 499, ``compare``'s default)::

    .venv/bin/python benchmarks/study_combination.py --seeds 100
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _scenarios as scenarios  # noqa: E402

import embdrift.reference as reference_module  # noqa: E402
from embdrift.reference import DECISION_METRICS, Reference  # noqa: E402
from embdrift.stats.permutation import rank_p_values  # noqa: E402

__all__ = ["main"]

ALPHA = 0.05
B_MAX = 499
KERNEL = ("mmd", "energy")


def _tippett(p: np.ndarray) -> np.ndarray:
    """min-p with Fisher's sum as the tie-break (what ``compare`` does): a score, larger is
    more extreme."""
    return -p.min(axis=1) - 1e-12 * np.log(p).sum(axis=1)


def _fisher(p: np.ndarray) -> np.ndarray:
    """Fisher's combination −Σ log p (Pesarin's non-parametric combination)."""
    return -np.log(p).sum(axis=1)


def _cauchy(p: np.ndarray) -> np.ndarray:
    """Liu & Xie (2020), JASA 115(529): the Cauchy combination sum tan((0.5 - p) pi)."""
    return np.tan((0.5 - np.clip(p, 1e-12, 1 - 1e-12)) * np.pi).sum(axis=1)


def _subset(rule: Callable, columns: list[int]) -> Callable:
    return lambda p: rule(p[:, columns])


def _weighted_tippett(weights: np.ndarray) -> Callable:
    w = weights / weights.sum()
    return lambda p: -(p / w).min(axis=1) - 1e-12 * np.log(p).sum(axis=1)


def rules(names: list[str]) -> dict[str, Callable]:
    idx = {n: i for i, n in enumerate(names)}
    no_novelty = [idx[n] for n in names if n != "novelty"]
    no_energy = [idx[n] for n in names if n != "energy"]
    kernel_weight = np.array([2.0 if n in KERNEL else 1.0 for n in names])
    return {
        "min-p (default)": _tippett,
        "fisher": _fisher,
        "cauchy": _cauchy,
        "min-p w/o novelty": _subset(_tippett, no_novelty),
        "min-p w/o energy": _subset(_tippett, no_energy),
        "min-p kernel x2": _weighted_tippett(kernel_weight),
    }


def _rejects(score: np.ndarray) -> bool:
    return float(np.mean(score >= score[0])) <= ALPHA


def recorded_scores(x: np.ndarray, y: np.ndarray, seed: int, fit_fraction: float) -> np.ndarray:
    """The (B_MAX + 1, J) permutation scores of the decision metrics of one compare."""
    seen: list[np.ndarray] = []
    original = reference_module.combine_min_p

    def record(scores: np.ndarray, **kwargs):
        seen.append(scores.copy())
        return original(scores, **kwargs)

    reference_module.combine_min_p = record
    try:
        ref = Reference.fit(x, seed=seed, fit_fraction=fit_fraction)
        ref.compare(y, metrics=DECISION_METRICS, n_permutations=B_MAX, seed=seed)
    finally:
        reference_module.combine_min_p = original
    return seen[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100, help="runs per scenario")
    parser.add_argument("--n", type=int, default=500, help="rows per side")
    parser.add_argument("--fit-fractions", type=float, nargs="+", default=[0.5, 0.3])
    parser.add_argument(
        "--cases",
        nargs="+",
        default=[
            "synthetic:none",
            "synthetic:mean_shift",
            "synthetic:spread",
            "synthetic:new_cluster",
            "synthetic:mix_shift",
            "real:none",
            "real:section_mix",
            "real:new_section",
        ],
    )
    args = parser.parse_args(argv)
    real = scenarios.RealText.load()
    names = list(DECISION_METRICS)
    chosen = rules(names)
    for case in args.cases:
        dataset, scenario = case.split(":")
        for fit_fraction in args.fit_fractions:
            start = time.perf_counter()
            hits: dict[str, int] = {}
            for seed in range(args.seeds):
                pair = (
                    real.pair(scenario, args.n, seed)
                    if dataset == "real"
                    else scenarios.synthetic_pair(scenario, args.n, seed)
                )
                scores = recorded_scores(*pair, seed + 10_000, fit_fraction)
                for b in (199, B_MAX):
                    p = rank_p_values(scores[: b + 1])
                    for label, rule in chosen.items():
                        key = f"B={b} {label}"
                        hits[key] = hits.get(key, 0) + _rejects(rule(p))
            rates = ", ".join(f"{k} {v / args.seeds:.3f}" for k, v in hits.items())
            print(
                f"{dataset} {scenario} fit_fraction={fit_fraction} ({args.seeds} runs,"
                f" {time.perf_counter() - start:.0f} s): {rates}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
