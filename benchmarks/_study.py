"""Shared by the studies (``study_*.py``): run one case's seeds over worker processes and
print the rejection rates."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor

__all__ = ["print_all_rates", "print_rates", "run_cases"]

#: ``study(dataset, scenario, seeds, size)`` -> rejection counts per decision over ``seeds``.
Study = Callable[[str, str, range, int], dict[str, int]]


def print_all_rates(
    study: Study,
    cases: Sequence[tuple[str, str]],
    *,
    seeds: int,
    jobs: int,
    size: int,
    runs: int,
) -> None:
    """:func:`print_rates` of every (dataset, scenario) pair of ``cases``, in order, on one
    pool of ``jobs`` worker processes."""
    with ProcessPoolExecutor(jobs) as pool:
        for dataset, scenario in cases:
            print_rates(
                pool, study, dataset, scenario, seeds=seeds, jobs=jobs, size=size, runs=runs
            )


def print_rates(
    pool: Executor,
    study: Study,
    dataset: str,
    scenario: str,
    *,
    seeds: int,
    jobs: int,
    size: int,
    runs: int,
) -> None:
    """Split ``range(seeds)`` into ``jobs`` interleaved shares run on ``pool``, sum the
    counts of ``study`` and print each decision's rate over ``runs`` runs in one line."""
    start = time.perf_counter()
    futures = [
        pool.submit(study, dataset, scenario, range(j, seeds, jobs), size) for j in range(jobs)
    ]
    hits: dict[str, int] = {}
    for part in (f.result() for f in futures):
        for key, count in part.items():
            hits[key] = hits.get(key, 0) + count
    rates = ", ".join(f"{k} {v / runs:.3f}" for k, v in hits.items())
    elapsed = time.perf_counter() - start
    print(f"{dataset} {scenario} ({runs} runs, {elapsed:.0f} s): {rates}", flush=True)


def run_cases(
    study: Study,
    cases: Sequence[tuple[str, str]],
    *,
    description: str,
    argv: list[str] | None = None,
) -> int:
    """The command line of a study over ``cases`` ((dataset, scenario) pairs): ``--seeds``,
    ``--n``, ``--jobs`` and ``--cases``; prints one line of rates per case."""
    names = [f"{d} {s}" for d, s in cases]
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, default=300, help="runs per scenario")
    parser.add_argument("--n", type=int, default=500, help="rows per side")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument(
        "--cases",
        nargs="+",
        default=names,
        choices=names,
        metavar="CASE",
        help="'dataset scenario' pairs to run (default: all)",
    )
    args = parser.parse_args(argv)
    chosen = [(d, s) for d, s in (case.split(" ", 1) for case in args.cases)]
    print_all_rates(study, chosen, seeds=args.seeds, jobs=args.jobs, size=args.n, runs=args.seeds)
    return 0
