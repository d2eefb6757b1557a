"""Planted-truth figures of docs/explain.md: real-text windows with a new section (rust, gnu-r)
at 5%, and windows with no new section.

Usage: python docs/explain_planted.py ../shared/data/debian_packages_minilm.npz 20
"""

from __future__ import annotations

import sys

import numpy as np

from embdrift.explain import explain
from embdrift.reference import Reference

MIX = ("python", "libs", "devel", "doc", "utils", "net", "games", "science")


def main(path: str, runs: int) -> None:
    with np.load(path, allow_pickle=False) as data:
        x, section = data["embeddings"].astype(np.float32), data["section"]
    split = np.random.default_rng(0)
    ref_pool, test_pool = {}, {}
    for name in np.unique(section):
        rows = split.permutation(np.flatnonzero(section == name))
        ref_pool[name], test_pool[name] = rows[: rows.size // 2], rows[rows.size // 2 :]

    def window(pool, n, rng, new=None, share=0.0):
        k = int(round(share * n))
        per = np.full(len(MIX), (n - k) // len(MIX))
        per[: n - k - per.sum()] += 1
        rows = [rng.choice(pool[s], c, replace=False) for s, c in zip(MIX, per, strict=True)]
        if new is not None:
            rows.append(rng.choice(pool[new], k, replace=False))
        return np.concatenate(rows)

    for new in ("rust", "gnu-r", None):
        found, purity, error = 0, [], []
        for seed in range(runs):
            rng = np.random.default_rng(seed)
            ref = Reference.fit(x[window(ref_pool, 2000, rng)], seed=seed)
            cur = window(test_pool, 1000, rng, new, 0.05 if new else 0.0)
            ex = explain(ref, x[cur], seed=seed)
            found += bool(ex.new_clusters)
            if new and ex.new_clusters:
                region = ex.new_clusters[0]
                purity.append((section[cur[list(region.members)]] == new).mean())
                error.append(region.share - 0.05)
        if new is None:
            print(f"no drift: runs with a new cluster {found}/{runs}")
            continue
        p, e = np.array(purity), 100 * np.array(error)
        print(
            f"{new} 5%: found {found}/{runs}; purity min {p.min():.2f} median"
            f" {np.median(p):.2f} (>=0.8 in {(p >= 0.8).sum()}); share error pp min"
            f" {e.min():+.1f} max {e.max():+.1f} (within 1.5 in {(abs(e) <= 1.5).sum()})"
        )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
