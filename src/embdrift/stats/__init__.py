"""Drift statistics: pure functions over arrays, the two-sample statistics they share with the
permutation engine, and the min-p combination of several metrics into one decision."""

from __future__ import annotations

from embdrift.stats.metrics import (
    energy_distance,
    js_divergence_hist,
    kl_divergence_hist,
    median_bandwidth,
    mmd2_unbiased,
    sliced_wasserstein,
    wasserstein_1d,
)
from embdrift.stats.permutation import (
    combine_min_p,
    group_permutation_masks,
    permutation_masks,
    rank_p_values,
)

__all__ = [
    "combine_min_p",
    "energy_distance",
    "group_permutation_masks",
    "js_divergence_hist",
    "kl_divergence_hist",
    "median_bandwidth",
    "mmd2_unbiased",
    "permutation_masks",
    "rank_p_values",
    "sliced_wasserstein",
    "wasserstein_1d",
]
