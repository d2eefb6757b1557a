"""Planted-truth figures for docs/explain.md (real-text data, rust / gnu-r at 5%, and no drift)."""

import sys
import numpy as np
from embdrift.explain import explain
from embdrift.reference import Reference

d = np.load(sys.argv[1], allow_pickle=False)
x, section = d["embeddings"].astype(np.float32), d["section"]
mix = ("python", "libs", "devel", "doc", "utils", "net", "games", "science")
rng0 = np.random.default_rng(0)
ref_pool, test_pool = {}, {}
for s in np.unique(section):
    rows = rng0.permutation(np.flatnonzero(section == s))
    ref_pool[s], test_pool[s] = rows[: rows.size // 2], rows[rows.size // 2 :]


def window(pool, n, rng, new=None, share=0.0):
    k = int(round(share * n))
    per = np.full(8, (n - k) // 8)
    per[: n - k - per.sum()] += 1
    rows = [rng.choice(pool[s], c, replace=False) for s, c in zip(mix, per)]
    return np.concatenate(rows + ([rng.choice(pool[new], k, replace=False)] if new else []))


runs = int(sys.argv[2])
for new in ("rust", "gnu-r", None):
    found, pur, err = 0, [], []
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        ref = Reference.fit(x[window(ref_pool, 2000, rng)], seed=seed)
        cur = window(test_pool, 1000, rng, new, 0.05 if new else 0.0)
        ex = explain(ref, x[cur], seed=seed)
        found += bool(ex.new_clusters)
        if new and ex.new_clusters:
            r = ex.new_clusters[0]
            pur.append((section[cur[list(r.members)]] == new).mean())
            err.append(r.share - 0.05)
    if new:
        pur, err = np.array(pur), np.array(err)
        print(
            f"{new} 5%: found {found}/{runs}; purity min {pur.min():.2f} median {np.median(pur):.2f}"
            f" (>=0.8 in {(pur >= 0.8).sum()}); share error pp min {100 * err.min():+.1f} max"
            f" {100 * err.max():+.1f} (within 1.5 in {(abs(err) <= 0.015).sum()})"
        )
    else:
        print(f"no drift: runs with a new cluster {found}/{runs}")
