"""Sample input files for the commands of README.md and docs/streaming.md.

Writes, into FOLDER (default: the current folder), synthetic embeddings of the demo's world
(``embdrift.synthetic.demo_weeks``, d = 384, float32):

- ``week0.npy``: week 0, 1,500 rows (a 2-D array);
- ``week4.npz`` and ``week4.parquet``: week 4 (mean shift, wider spread, a new cluster at 4%),
  1,500 rows with ids ``w4-0000`` ...;
- ``traffic.npz`` and ``traffic.parquet``: 3,000 rows with timestamps, 500 per hour from
  2026-01-05 00:00 UTC: three hours of a fresh week-0 sample, then three hours of week 4;
- ``batch.npy``: 300 rows of week 4, for ``curl --data-binary @batch.npy``.

Usage: .venv/bin/python docs/sample_inputs.py [FOLDER]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embdrift.synthetic import demo_weeks


def _table(x: np.ndarray, ids: np.ndarray, stamps: np.ndarray | None = None) -> pa.Table:
    columns = {
        "id": pa.array(ids),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1]),
    }
    if stamps is not None:
        columns["timestamp"] = pa.array(stamps)
    return pa.table(columns)


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    week0, week4 = demo_weeks(seed=0)
    fresh0, fresh4 = demo_weeks(seed=1)  # same world, rows the reference never saw
    ids4 = np.array([f"w4-{i:04d}" for i in range(len(week4))])
    np.save(folder / "week0.npy", week0)
    np.savez(folder / "week4.npz", embeddings=week4, ids=ids4)
    pq.write_table(_table(week4, ids4), folder / "week4.parquet")

    traffic = np.vstack([fresh0, fresh4])
    ids = np.array([f"t-{i:04d}" for i in range(len(traffic))])
    # 500 rows per hour: 7.2 s apart, so each hour holds exactly 500 rows.
    stamps = np.datetime64("2026-01-05T00:00:00", "ms") + np.arange(len(traffic)) * 7200
    np.savez(folder / "traffic.npz", embeddings=traffic, ids=ids, timestamps=stamps)
    pq.write_table(_table(traffic, ids, stamps), folder / "traffic.parquet")
    np.save(folder / "batch.npy", week4[:300])
    names = "week0.npy week4.npz week4.parquet traffic.npz traffic.parquet batch.npy"
    print(f"wrote {names} to {folder}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("."))
