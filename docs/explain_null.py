"""No-drift figures of docs/explain.md: how often the moved / re-weighted cluster tests reject
when the current window is drawn from the same real-text pool as the reference.

Each run draws 3,000 distinct rows at random: 2,000 fit the reference (1,000 fit rows, 1,000
held-out test rows), 1,000 are the current window. Prints the share of the share-test and
shift-test p-values at or below 0.05 and 0.01, and the share of runs that report a moved or a
re-weighted cluster (alpha = 0.05, family-wise).

Usage: python docs/explain_null.py ../shared/data/debian_packages_minilm.npz 100
"""

from __future__ import annotations

import sys

import numpy as np

from embdrift.explain import explain
from embdrift.reference import Reference


def main(path: str, runs: int) -> None:
    with np.load(path, allow_pickle=False) as data:
        x = data["embeddings"].astype(np.float32)
    share_p: list[float] = []
    shift_p: list[float] = []
    moved = reweighted = either = 0
    for seed in range(runs):
        rows = np.random.default_rng(900 + seed).permutation(x.shape[0])
        reference = Reference.fit(x[rows[:2000]], seed=seed)
        found = explain(reference, x[rows[2000:3000]], seed=seed).reference_clusters
        share_p += [c.share_p_value for c in found]
        shift_p += [c.shift_p_value for c in found if c.shift_p_value is not None]
        m, r = any(c.moved for c in found), any(c.reweighted for c in found)
        moved, reweighted, either = moved + m, reweighted + r, either + (m or r)
    for name, p in (("share", np.array(share_p)), ("shift", np.array(shift_p))):
        print(
            f"{name} tests: {p.size} p-values, {np.mean(p <= 0.05):.1%} at or below 0.05,"
            f" {np.mean(p <= 0.01):.1%} at or below 0.01"
        )
    print(
        f"runs reporting a moved cluster {moved / runs:.0%}, a re-weighted one"
        f" {reweighted / runs:.0%}, either {either / runs:.0%} ({runs} runs)"
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
