"""Study: how much of the reference window can the kernel statistics use, and what does the
verdict gain? (Not part of ``make bench``.)

At n = 500 per side ``Reference.fit`` holds out half the reference window; a test on the
held-out half alone compares 250 rows with 500. For ``mmd`` (and ``energy``) this prints the
power on the real-text section mix and the false-alarm rate on ``none`` for three ways to use
the fit half, on the same data, the same fitted reference and permutation masks:

- ``held_out``: the held-out rows alone (what a stored null calibrates);
- ``anchored``: the fit rows kept on the reference side of every permutation (exact
  conditional on the fit rows; what ``compare`` does with ``groups=``);
- ``full``: all 500 reference rows permuted with the current rows (what ``compare`` does
  without groups, there at a bandwidth chosen on the pooled rows: the projection metrics
  fitted on the fit rows cannot follow, so the verdict combines the two families with a
  weighted Bonferroni, ``embdrift.reference._combine_families``).

Then the verdict of ``Reference.compare`` with the default and two alternative settings
(``fit_fraction=0.3``; the decision without ``novelty``) on the real-text section mix and the
synthetic spread scenario::

    .venv/bin/python benchmarks/study_anchors.py --seeds 100

With ``--bandwidth``: does another kernel bandwidth make anchored MMD more powerful (the fitted
median-heuristic bandwidth times 0.25 ... 1.5, on six scenarios)?
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _scenarios as scenarios  # noqa: E402

from embdrift.reference import Reference  # noqa: E402
from embdrift.stats.permutation import permutation_masks  # noqa: E402
from embdrift.stats.twosample import EnergyStatistic, KernelMMD, pairwise_sq_distances  # noqa: E402

__all__ = ["main"]

ALPHA = 0.05
B = 199
#: The decision metrics when this study ran (``reconstruction_error`` was later replaced by
#: ``local_reconstruction_error``), without ``novelty``.
WITHOUT_NOVELTY = ("mmd", "energy", "reconstruction_error", "residual_mean_shift")


def _p(values: np.ndarray) -> float:
    return float(np.mean(values >= values[0]))


def kernel_rejections(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, bool]:
    """Whether each way of using the reference window rejects at ALPHA, for mmd and energy."""
    ref = Reference.fit(x, seed=seed)
    rng = np.random.default_rng(seed)
    fit, held = ref.anchors.astype(np.float64), ref.sample.astype(np.float64)
    cur = y.astype(np.float32).astype(np.float64)
    pooled = np.vstack([fit, held, cur])
    sq = pairwise_sq_distances(pooled)
    tested = permutation_masks(held.shape[0], cur.shape[0], B, rng)
    anchored = np.hstack([np.ones((B + 1, fit.shape[0]), np.float32), tested])
    full = permutation_masks(fit.shape[0] + held.shape[0], cur.shape[0], B, rng)
    inner = np.s_[fit.shape[0] :, fit.shape[0] :]
    stats = {
        "mmd": lambda sel, d: KernelMMD(pooled[sel], bandwidth=ref.bandwidth, sq_distances=d),
        "energy": lambda sel, d: EnergyStatistic(pooled[sel], sq_distances=d),
    }
    out = {}
    for name, make in stats.items():
        rest = slice(fit.shape[0], None)
        out[f"{name} held_out"] = _p(make(rest, sq[inner]).values(tested)) <= ALPHA
        everything = make(slice(None), sq)
        out[f"{name} anchored"] = _p(everything.values(anchored)) <= ALPHA
        out[f"{name} full"] = _p(everything.values(full)) <= ALPHA
    return out


def verdicts(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, bool]:
    """The combined decision of compare with the default and the two alternative settings."""
    default = Reference.fit(x, seed=seed)
    small_fit = Reference.fit(x, seed=seed, fit_fraction=0.3)
    opts = {"n_permutations": B, "seed": seed}
    return {
        "verdict (default)": default.compare(y, **opts).drifted,
        "verdict fit_fraction=0.3": small_fit.compare(y, **opts).drifted,
        "verdict without novelty": default.compare(
            y, decision_metrics=WITHOUT_NOVELTY, **opts
        ).drifted,
    }


BANDWIDTH_FACTORS = (0.25, 0.5, 0.75, 1.0, 1.5)


def bandwidth_rejections(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, bool]:
    """Whether anchored MMD rejects at ALPHA with the fitted bandwidth times each factor."""
    ref = Reference.fit(x, seed=seed)
    fit, held = ref.anchors.astype(np.float64), ref.sample.astype(np.float64)
    pooled = np.vstack([fit, held, y.astype(np.float32).astype(np.float64)])
    sq = pairwise_sq_distances(pooled)
    tested = permutation_masks(held.shape[0], y.shape[0], B, np.random.default_rng(seed))
    anchored = np.hstack([np.ones((B + 1, fit.shape[0]), np.float32), tested])
    out = {}
    for factor in BANDWIDTH_FACTORS:
        kernel = KernelMMD(pooled, bandwidth=ref.bandwidth * factor, sq_distances=sq)
        out[f"mmd anchored bandwidth x{factor}"] = _p(kernel.values(anchored)) <= ALPHA
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100, help="runs per scenario")
    parser.add_argument("--n", type=int, default=500, help="rows per side")
    parser.add_argument(
        "--bandwidth",
        action="store_true",
        help="instead: anchored MMD with the fitted bandwidth scaled by"
        f" {BANDWIDTH_FACTORS}, on six scenarios",
    )
    args = parser.parse_args(argv)
    real = scenarios.RealText.load()
    cases = [
        ("real", "section_mix", kernel_rejections),
        ("real", "none", kernel_rejections),
        ("real", "section_mix", verdicts),
        ("synthetic", "spread", verdicts),
    ]
    if args.bandwidth:
        cases = [
            (dataset, scenario, bandwidth_rejections)
            for dataset, scenario in (
                ("real", "section_mix"),
                ("real", "none"),
                ("real", "new_section"),
                ("synthetic", "spread"),
                ("synthetic", "mean_shift"),
                ("synthetic", "new_cluster"),
            )
        ]
    for dataset, scenario, study in cases:
        start, hits = time.perf_counter(), {}
        for seed in range(args.seeds):
            pair = (
                real.pair(scenario, args.n, seed)
                if dataset == "real"
                else scenarios.synthetic_pair(scenario, args.n, seed)
            )
            for key, rejected in study(*pair, seed).items():
                hits[key] = hits.get(key, 0) + rejected
        rates = ", ".join(f"{k} {v / args.seeds:.3f}" for k, v in hits.items())
        print(
            f"{dataset} {scenario} ({args.seeds} runs, {time.perf_counter() - start:.0f} s):"
            f" {rates}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
