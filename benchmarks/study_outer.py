"""Study: how many leading PCs should the "outer" subspace hold? (Not part of ``make bench``.)

``reconstruction_error`` and ``residual_mean_shift`` look outside the reference's top
``outer_components`` PCs (``Reference.fit``). The synthetic reference clusters span about 56
directions (8 clusters, each a centre and 6 strong directions); outside 50 PCs some of that is
left, and its own variance may hide part of a change of spread there. This prints, for several
``outer_components``, the power (or, on ``none``, the false-alarm rate) of the verdict of
``Reference.compare`` (default settings) and of the two metrics alone, at alpha = 0.05 on every
benchmark scenario, on the pairs and seeds of ``benchmarks/run.py``'s detection part (its
first ``--seeds`` seeds; its ``none`` row has 1,000)::

    .venv/bin/python benchmarks/study_outer.py --seeds 300

``--large-reference`` instead: the setting of ``tests/stream/test_stream_accuracy.py``, a
larger reference (half of every real-text base section's rows, about 3,200, so 1,600 fit rows;
a row-level split) against windows of 300 rows of which 4% come from a section the reference
never saw (``rust``); one reference per seed, ``--windows`` windows each.
``--jobs 2`` splits the seeds over two processes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _scenarios as scenarios  # noqa: E402
import numpy as np  # noqa: E402
from _study import print_all_rates  # noqa: E402

from embdrift.reference import Reference  # noqa: E402
from embdrift.results import DriftResult  # noqa: E402

__all__ = ["main"]

ALPHA = 0.05
OUTER = (50, 70, 100)
ALONE = ("reconstruction_error", "residual_mean_shift")
CASES = tuple(("synthetic", s) for s in scenarios.SYNTHETIC_SCENARIOS) + tuple(
    ("real", s) for s in scenarios.REAL_SCENARIOS
)


def rejections(dataset: str, scenario: str, seeds: range, n: int) -> dict[str, int]:
    """Rejection counts per (outer_components, decision) over ``seeds``."""
    real = scenarios.RealText.load() if dataset == "real" else None
    hits: dict[str, int] = {}
    for seed in seeds:
        pair = (
            real.pair(scenario, n, 10_000 + seed)
            if real is not None
            else scenarios.synthetic_pair(scenario, n, 10_000 + seed)
        )
        for outer in OUTER:
            ref = Reference.fit(pair[0], seed=seed, outer_components=outer)
            _tally(hits, outer, ref.compare(pair[1], alpha=ALPHA, seed=seed))
    return hits


LARGE_WINDOW = 300
LARGE_NEW_ROWS = 12  # 4% of the window
LARGE_NEW_SECTION = "rust"
LARGE_CASES = (("real", f"large reference, {LARGE_NEW_SECTION} 4%"),)


def large_reference_rejections(
    dataset: str, scenario: str, seeds: range, windows: int
) -> dict[str, int]:
    """Rejection counts per (outer_components, decision): one large reference per seed."""
    real = scenarios.RealText.load()
    new_rows = np.flatnonzero(real.section == LARGE_NEW_SECTION)
    hits: dict[str, int] = {}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        pool_ref, pool_test = [], []
        for name in scenarios.REAL_BASE_SECTIONS:
            rows = rng.permutation(np.flatnonzero(real.section == name))
            pool_ref.append(rows[: rows.size // 2])
            pool_test.append(rows[rows.size // 2 :])
        test_rows = np.concatenate(pool_test)
        currents = [
            real.embeddings[
                np.concatenate(
                    [
                        rng.choice(test_rows, LARGE_WINDOW - LARGE_NEW_ROWS, replace=False),
                        rng.choice(new_rows, LARGE_NEW_ROWS, replace=False),
                    ]
                )
            ]
            for _ in range(windows)
        ]
        x = real.embeddings[np.concatenate(pool_ref)]
        for outer in OUTER:
            ref = Reference.fit(x, seed=seed, outer_components=outer)
            for w, current in enumerate(currents):
                _tally(hits, outer, ref.compare(current, alpha=ALPHA, seed=w))
    return hits


def _tally(hits: dict[str, int], outer: int, result: DriftResult) -> None:
    decisions = {"verdict": result.drifted} | {
        name: result.metrics[name].p_value <= ALPHA for name in ALONE
    }
    for name, rejected in decisions.items():
        key = f"{name} outer={outer}"
        hits[key] = hits.get(key, 0) + bool(rejected)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seeds",
        type=int,
        default=300,
        help="runs per scenario (references with --large-reference)",
    )
    parser.add_argument(
        "--n", type=int, default=500, help="rows per side (not with --large-reference)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument(
        "--large-reference",
        action="store_true",
        help="instead: a ~3,200-row real-text reference, windows of 300 rows with 4%% rust",
    )
    parser.add_argument("--windows", type=int, default=5, help="windows per large reference")
    args = parser.parse_args(argv)
    study, cases, size, runs = rejections, CASES, args.n, args.seeds
    if args.large_reference:
        study, cases, size = large_reference_rejections, LARGE_CASES, args.windows
        runs = args.seeds * args.windows
    print_all_rates(study, cases, seeds=args.seeds, jobs=args.jobs, size=size, runs=runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
