"""Dask engine throughput: 1 and 2 worker processes against one process, on the same Parquet files.

Generates ``--rows`` (default 2,000,000) synthetic 384-d float32 embeddings
(``embdrift.synthetic.World``) into ``--files`` Parquet files (fixed-size-list column, row
groups of 25,000) in a temporary directory, deleted afterwards. Then sketches all of them with
the default :class:`~embdrift.stream.SketchSet` (512 frequencies, 16 projections, KLL k = 200,
a 10,000-row reservoir):

* **single process**: ``embdrift.io.read_embeddings`` per file and ``SketchSet.update`` in
  16,384-row chunks, with one BLAS thread and with the default BLAS threads;
* **dask, 1 and 2 workers**: ``embdrift.engines.dask.sketch_dataset`` on a ``LocalCluster``
  of worker processes with one thread each (Dask sets one BLAS thread per worker), one task
  per file, tree merge with fan-in 8. Cluster start-up is timed apart.

Each run reports wall time, rows/s and MB/s of embeddings (rows × 384 × 4 bytes); the dask runs
also check that their merged sketches equal the single-process ones (count, feature sums).
Writes the table with the machine, versions, date and load average to
``benchmarks/RESULTS-dask.md``.

Run: ``.venv/bin/python benchmarks/dask_throughput.py`` (``--rows 200000`` for a short run);
``make bench`` runs it after the peer benchmark.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from embdrift import Reference
from embdrift.engines.dask import connect, sketch_dataset
from embdrift.io import read_embeddings
from embdrift.stream import SketchSet, StreamBasis
from embdrift.synthetic import World

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
DIM = 384
CHUNK = 16_384


def _load() -> str:
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or "unknown"


def _autogroup() -> str:
    try:
        on = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return "scheduler autogroups unknown"
    if on:
        return (
            "Linux autogroup scheduling on (CPU time is shared per session, so the worker"
            " processes of one session compete for that session's share)"
        )
    return "Linux autogroup scheduling off"


def generate(root: Path, *, rows: int, files: int, world: World) -> list[Path]:
    weights = np.ones(world.centers.shape[0])
    weights[-1] = 0.0
    paths = []
    for i, n in enumerate(np.diff(np.linspace(0, rows, files + 1).astype(int))):
        x, _ = world.sample(int(n), weights=weights, seed=1000 + i)
        column = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel(), pa.float32()), DIM)
        path = root / f"part-{i:04d}.parquet"
        pq.write_table(pa.table({"embedding": column}), path, row_group_size=25_000)
        paths.append(path)
    return paths


def single_process(paths: list[Path], basis: StreamBasis) -> tuple[float, SketchSet]:
    t0 = time.perf_counter()
    sketches = SketchSet(basis)
    for path in paths:
        x = read_embeddings(path).embeddings
        for lo in range(0, x.shape[0], CHUNK):
            sketches.update(x[lo : lo + CHUNK])
    return time.perf_counter() - t0, sketches


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--files", type=int, default=40)
    p.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    p.add_argument("--out", type=Path, default=HERE / "RESULTS-dask.md")
    p.add_argument("--tmp", type=Path, default=None, help="where the Parquet files go")
    args = p.parse_args(argv)

    world = World.make(dim=DIM, seed=12345)
    weights = np.ones(world.centers.shape[0])
    weights[-1] = 0.0
    reference = Reference.fit(world.sample(4000, weights=weights, seed=0)[0], seed=0)
    basis = StreamBasis(reference)
    rows_out: list[dict[str, object]] = []
    tmp = Path(tempfile.mkdtemp(prefix="embdrift-dask-bench-", dir=args.tmp))
    try:
        t0 = time.perf_counter()
        paths = generate(tmp, rows=args.rows, files=args.files, world=world)
        gen_s = time.perf_counter() - t0
        size_gb = sum(f.stat().st_size for f in paths) / 1e9
        print(
            f"generated {args.rows:,} rows in {len(paths)} files ({size_gb:.2f} GB), {gen_s:.0f} s"
        )
        mb = args.rows * DIM * 4 / 1e6

        def record(engine: str, seconds: float, startup: float | None, load: str) -> None:
            rows_out.append(
                {
                    "engine": engine,
                    "seconds": seconds,
                    "rows_s": args.rows / seconds,
                    "mb_s": mb / seconds,
                    "startup": startup,
                    "load": load,
                }
            )
            print(
                f"{engine:34s} {seconds:7.1f} s  {args.rows / seconds:10,.0f} rows/s  load {load}"
            )

        with threadpool_limits(1):
            load = _load()
            secs, one = single_process(paths, basis)
        record("single process, 1 BLAS thread", secs, None, load)
        load = _load()
        secs, _ = single_process(paths, basis)
        record("single process, default BLAS threads", secs, None, load)
        for n in args.workers:
            t1 = time.perf_counter()
            with connect(n_workers=n) as client:
                startup = time.perf_counter() - t1
                load = _load()
                t2 = time.perf_counter()
                merged = sketch_dataset([str(f) for f in paths], reference, client=client)
                secs = time.perf_counter() - t2
            assert merged.count == one.count == args.rows
            np.testing.assert_allclose(
                merged.rff.feature_sum, one.rff.feature_sum, rtol=1e-5, atol=1e-3
            )
            record(f"dask, {n} worker process(es)", secs, startup, load)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write(args, rows_out, size_gb)
    return 0


def write(args: argparse.Namespace, rows: list[dict[str, object]], size_gb: float) -> None:
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("embdrift", "numpy", "pyarrow", "dask", "distributed", "datasketches")
    )
    base = float(rows[0]["rows_s"])  # type: ignore[arg-type]
    lines = [
        "# Dask engine throughput",
        "",
        f"Generated by `benchmarks/dask_throughput.py` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}"
        " UTC.",
        "",
        f"- Machine: {os.cpu_count()} CPUs ({_cpu()}), {platform.system()} {platform.release()},"
        f" Python {platform.python_version()}",
        f"- Versions: {versions}",
        f"- Data: {args.rows:,} × {DIM} float32 synthetic embeddings in {args.files} Parquet files"
        f" ({size_gb:.2f} GB on disk, row groups of 25,000), one task per file",
        "- Sketches: default SketchSet (512 frequencies, 16 projections, KLL k = 200, 10,000-row"
        " reservoir); merged sums checked against the single-process run",
        "- The machine is shared with other jobs: the 1/5/15-min load average at the start of"
        " each run is beside it. Dask workers run one thread each (one BLAS thread).",
        "",
        "| engine | wall time (s) | rows/s | MB/s | vs single process (1 thread) |"
        " cluster start-up (s) | load average |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        startup = "-" if r["startup"] is None else f"{r['startup']:.1f}"
        lines.append(
            f"| {r['engine']} | {r['seconds']:.1f} | {r['rows_s']:,.0f} | {r['mb_s']:.0f} |"
            f" {float(r['rows_s']) / base:.2f}× | {startup} | {r['load']} |"  # type: ignore[arg-type]
        )
    lines += [
        "",
        "How to read it: sketching is CPU-bound (one float32 product of each row with a"
        " (d, 2D + p + k) matrix, cos/sin, KLL updates), so workers add throughput only when"
        " free cores exist. On a shared machine the figures measure the CPU share this job"
        f" got, not the engine. Here: {os.cpu_count()} CPUs, load average above, and"
        f" {_autogroup()}.",
        "",
        f"Reproduce: `.venv/bin/python benchmarks/dask_throughput.py --rows {args.rows}"
        f" --files {args.files}` (part of `make bench`).",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
