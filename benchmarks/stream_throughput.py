"""Streaming throughput, state size and check latency, beside the exact batch check.

For d = 384 and d = 768: the default sketch set (512 frequencies = 1,024 random features,
16 projections + the reconstruction error in KLL k = 200 sketches, a 10,000-row reservoir)
is fed batches of 1,000 synthetic embeddings in one process. Reported: update throughput
(embeddings per second of wall time, and per second of CPU time of all threads, which other
jobs on the machine disturb less), serialised state size, the latency of one test of a
1,000-row window (statistics from the sketches + p-values from the cached calibration), the
one-off calibration time at that window size, and the exact batch check
(``Reference.compare``, 500 permutations) of the same 1,000 rows.

Run: ``python benchmarks/stream_throughput.py`` (``--quick`` for a short run).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from embdrift import Reference
from embdrift.stream import SketchSet, StreamMonitor
from embdrift.synthetic import World

__all__ = ["run"]


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


def run(quick: bool = False) -> list[dict[str, object]]:
    """One row per embedding dimension; see the module docstring for the columns."""
    rows: list[dict[str, object]] = []
    n_rows = 50_000 if quick else 200_000
    batch = 1_000
    for dim in (384, 768):
        world = World.make(dim=dim, seed=12345)
        weights = np.ones(9)
        weights[-1] = 0.0
        ref_x, _ = world.sample(2_000, weights=weights, seed=0)
        stream_x, _ = world.sample(20_000, weights=weights, seed=1)
        reference = Reference.fit(ref_x, seed=0)
        monitor = StreamMonitor(reference, window=1_000)
        sketches = SketchSet(monitor.basis)
        sketches.update(stream_x[:batch])  # warm-up (allocations, BLAS threads)
        t0 = time.perf_counter()
        c0 = time.process_time()
        done = 0
        while done < n_rows:
            lo = done % stream_x.shape[0]
            sketches.update(stream_x[lo : lo + batch])
            done += batch
        update_s = time.perf_counter() - t0
        update_cpu = time.process_time() - c0
        state = len(sketches.to_bytes())
        window = SketchSet(monitor.basis).update(stream_x[:1_000])
        t1 = time.perf_counter()
        monitor.null.raw_null(1_000)
        calibration_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        repeats = 5
        for _ in range(repeats):
            result = monitor.test(window)
        check_s = (time.perf_counter() - t2) / repeats
        t3 = time.perf_counter()
        batch_result = reference.compare(stream_x[:1_000], n_permutations=500, seed=0)
        batch_s = time.perf_counter() - t3
        rows.append(
            {
                "dim": dim,
                "rows_fed": done,
                "embeddings_per_s": round(done / update_s),
                # CPU time (all threads) is less sensitive than wall time to other jobs.
                "embeddings_per_cpu_s": round(done / update_cpu),
                "state_mb": round(state / 1e6, 2),
                "window_check_ms": round(1e3 * check_s, 1),
                "calibration_s": round(calibration_s, 2),
                "stream_p_value": round(result.p_value, 4),
                "batch_check_s": round(batch_s, 2),
                "batch_p_value": round(batch_result.p_value, 4),
                "load_avg_1min": _load(),
            }
        )
    return rows


def _print(rows: list[dict[str, object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="embdrift streaming throughput (batches of 1,000, one process)")
    for key in rows[0]:
        table.add_column(key, justify="right")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    Console(width=200).print(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="50,000 rows per dimension instead of 200,000"
    )
    args = parser.parse_args(argv)
    _print(run(quick=args.quick))


if __name__ == "__main__":
    main()
