"""The drift checks the benchmark compares: embdrift and the peers, behind one signature.

Every method is ``check(reference, current, seed) -> Outcome``: a decision at alpha=0.05, a
score that grows with drift (used for size-adjusted power), and the p-value where the method
has one. Peers are imported lazily so that embdrift alone runs in the main ``.venv``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ALPHA",
    "DCOR_RESAMPLES",
    "EMBDRIFT_METRICS",
    "METHODS",
    "PEERS",
    "POT_PERMUTATIONS",
    "POT_PROJECTIONS",
    "Outcome",
    "make_check",
]

ALPHA = 0.05
#: dcor's default ``num_resamples=0`` returns p = 1.0 always; 100 matches alibi-detect's default.
DCOR_RESAMPLES = 100
#: POT gives a distance only; the benchmark wraps it in a permutation test of this size.
POT_PERMUTATIONS = 100
POT_PROJECTIONS = 50

EMBDRIFT_METRICS = (
    "mmd",
    "energy",
    "wasserstein_pc1",
    "sliced_wasserstein",
    "kl_pc1",
    "js_pc1",
    "mean_shift",
    "spread_ratio",
    "reconstruction_error",
    "local_reconstruction_error",
    "novelty",
    "residual_mean_shift",
)


@dataclass(frozen=True)
class Outcome:
    """One check: decision, a drift score (larger = more drift), p-value if any, and for
    embdrift the per-metric decisions."""

    drifted: bool
    score: float
    p_value: float | None = None
    per_metric: dict[str, bool] = field(default_factory=dict)


Check = Callable[[np.ndarray, np.ndarray, int], Outcome]


def _neg_log_p(p: float) -> float:
    return -math.log10(max(p, 1e-300))


def _embdrift(n_permutations: int | None) -> Check:
    from embdrift import Reference

    def check(x: np.ndarray, y: np.ndarray, seed: int) -> Outcome:
        ref = Reference.fit(x, seed=seed)
        kwargs = {} if n_permutations is None else {"n_permutations": n_permutations}
        result = ref.compare(y, alpha=ALPHA, seed=seed, **kwargs)
        return Outcome(
            drifted=bool(result.drifted),
            score=_neg_log_p(result.p_value),
            p_value=float(result.p_value),
            per_metric={name: bool(m.drifted) for name, m in result.metrics.items()},
        )

    return check


def _embdrift_stored(_: int | None) -> Check:
    """embdrift for monitoring: the null stored at fit for the window size, one statistic per
    check (``Reference.fit(..., window_sizes=(m,))``, ``compare(..., calibration="stored")``)."""
    from embdrift import Reference

    def check(x: np.ndarray, y: np.ndarray, seed: int) -> Outcome:
        ref = Reference.fit(x, seed=seed, window_sizes=(y.shape[0],))
        result = ref.compare(y, alpha=ALPHA, seed=seed, calibration="stored")
        return Outcome(
            drifted=bool(result.drifted),
            score=_neg_log_p(result.p_value),
            p_value=float(result.p_value),
        )

    return check


def _alibi_mmd() -> Check:
    import torch
    from alibi_detect.cd import MMDDrift

    def check(x: np.ndarray, y: np.ndarray, seed: int) -> Outcome:
        torch.manual_seed(seed)
        np.random.seed(seed)  # alibi draws permutations from numpy's global RNG too
        detector = MMDDrift(x, backend="pytorch", p_val=ALPHA, device="cpu")
        data = detector.predict(y)["data"]
        return Outcome(
            drifted=bool(data["is_drift"]),
            score=float(data["distance"]),
            p_value=float(data["p_val"]),
        )

    return check


def _evidently(name: str) -> Check:
    import pandas as pd
    from evidently.legacy.metrics.data_drift import embedding_drift_methods as edm

    method = getattr(edm, name)()

    def check(x: np.ndarray, y: np.ndarray, seed: int) -> Outcome:
        # fresh frames: the model method adds a column to the caller's frames
        score, drifted, _ = method(pd.DataFrame(y), pd.DataFrame(x))
        return Outcome(drifted=bool(drifted), score=float(score))

    return check


def _dcor_energy() -> Check:
    import dcor

    def check(x: np.ndarray, y: np.ndarray, seed: int) -> Outcome:
        test = dcor.homogeneity.energy_test(x, y, num_resamples=DCOR_RESAMPLES, random_state=seed)
        p = float(test.pvalue)
        return Outcome(drifted=p <= ALPHA, score=float(test.statistic), p_value=p)

    return check


def _pot_sliced() -> Check:
    import ot

    def check(x: np.ndarray, y: np.ndarray, seed: int) -> Outcome:
        pooled = np.concatenate([x, y]).astype(np.float64)
        n = x.shape[0]
        rng = np.random.default_rng(seed)

        def stat(idx: np.ndarray) -> float:
            # the same projections for every split (seeded), so the test is exact
            return float(
                ot.sliced_wasserstein_distance(
                    pooled[idx[:n]], pooled[idx[n:]], n_projections=POT_PROJECTIONS, seed=seed
                )
            )

        observed = stat(np.arange(pooled.shape[0]))
        null = [stat(rng.permutation(pooled.shape[0])) for _ in range(POT_PERMUTATIONS)]
        p = (1 + sum(v >= observed for v in null)) / (POT_PERMUTATIONS + 1)
        return Outcome(drifted=p <= ALPHA, score=observed, p_value=p)

    return check


def _ks_bonferroni() -> Check:
    from scipy.stats import ks_2samp

    def check(x: np.ndarray, y: np.ndarray, seed: int) -> Outcome:
        p_min = float(np.min(ks_2samp(x, y, axis=0).pvalue))
        p = min(1.0, p_min * x.shape[1])
        return Outcome(drifted=p <= ALPHA, score=_neg_log_p(p_min), p_value=p)

    return check


#: name -> (factory taking the embdrift permutation count, needs the peers env)
METHODS: dict[str, tuple[Callable[[int | None], Check], bool]] = {
    "embdrift": (_embdrift, False),
    "embdrift stored null": (_embdrift_stored, False),
    "alibi-detect MMDDrift": (lambda _: _alibi_mmd(), True),
    "evidently model": (lambda _: _evidently("model"), True),
    "evidently ratio": (lambda _: _evidently("ratio"), True),
    "evidently distance": (lambda _: _evidently("distance"), True),
    "evidently mmd": (lambda _: _evidently("mmd"), True),
    "dcor energy_test": (lambda _: _dcor_energy(), True),
    "POT sliced W + perm": (lambda _: _pot_sliced(), True),
    "scipy KS + Bonferroni": (lambda _: _ks_bonferroni(), False),
}
PEERS = tuple(name for name in METHODS if not name.startswith("embdrift"))


def make_check(name: str, *, n_permutations: int | None = None) -> Check:
    """The check function of method ``name`` (``n_permutations`` is embdrift's; None keeps
    its default)."""
    factory, _ = METHODS[name]
    return factory(n_permutations)
