"""Shared by the studies (``study_*.py``): run one case's seeds over worker processes and
print the rejection rates."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Executor

__all__ = ["print_rates"]

#: ``study(dataset, scenario, seeds, size)`` -> rejection counts per decision over ``seeds``.
Study = Callable[[str, str, range, int], dict[str, int]]


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
