"""docs/sample_inputs.py writes the files the README's command-line examples read.

The README's commands (``embdrift reference build week0.npy``, ``check ... week4.parquet``,
``stream ... traffic.parquet --window 1h``, ``curl --data-binary @batch.npy``) name these files;
this checks that the script makes them in the formats embdrift reads, with the promised
contents: week 0 is the demo's week 0, and the traffic has 500 rows per hour, week 0 first.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from embdrift.io import read_embeddings
from embdrift.synthetic import demo_weeks
from support import REPO


def test_sample_inputs_are_readable_and_as_described(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "docs" / "sample_inputs.py"), str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    week0, week4 = demo_weeks(seed=0)
    np.testing.assert_array_equal(read_embeddings(tmp_path / "week0.npy").embeddings, week0)
    for name in ("week4.npz", "week4.parquet"):
        got = read_embeddings(tmp_path / name)
        np.testing.assert_array_equal(got.embeddings, week4)
        assert got.ids is not None and len(set(got.ids.tolist())) == len(week4)
    np.testing.assert_array_equal(read_embeddings(tmp_path / "batch.npy").embeddings, week4[:300])

    fresh0, fresh4 = demo_weeks(seed=1)
    for name in ("traffic.npz", "traffic.parquet"):
        got = read_embeddings(tmp_path / name)
        np.testing.assert_array_equal(got.embeddings, np.vstack([fresh0, fresh4]))
        assert got.timestamps is not None
        stamps = got.timestamps.astype("datetime64[ms]")
        assert np.all(np.diff(stamps) > np.timedelta64(0, "ms"))
        hours = (stamps - stamps[0]) // np.timedelta64(1, "h")
        np.testing.assert_array_equal(np.bincount(hours.astype(np.int64)), [500] * 6)
