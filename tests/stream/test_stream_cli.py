"""``embdrift stream`` end to end: replay files, print windows, record them in a real DuckDB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embdrift.synthetic import make_scenario

EMBDRIFT = [sys.executable, "-m", "embdrift"]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EMBDRIFT, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("stream_cli")
    ref, same = make_scenario("none", n_reference=1200, n_current=1200, dim=32, seed=0)
    _, moved = make_scenario(
        "mean_shift", n_reference=2, n_current=1200, dim=32, strength=8, seed=1
    )
    np.save(cwd / "week0.npy", ref)
    x = np.vstack([same, moved])
    stamps = np.datetime64("2026-02-01T00:00:00", "s") + np.arange(2400) * np.timedelta64(6, "s")
    ids = np.array([f"doc-{i}" for i in range(2400)])
    np.savez(cwd / "traffic.npz", embeddings=x, timestamps=stamps, ids=ids)
    table = pa.table(
        {
            "embedding": pa.array(list(x), type=pa.list_(pa.float32())),
            "timestamp": pa.array(stamps.astype("datetime64[us]")),
            "id": pa.array(ids),
        }
    )
    pq.write_table(table, cwd / "traffic.parquet", row_group_size=500)
    proc = run(["reference", "build", "week0.npy", "-o", "ref.npz"], cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd


def test_time_windows_from_npz_are_printed_and_stored(workdir: Path) -> None:
    store = workdir / "a.duckdb"
    args = ["stream", "--reference", "ref.npz", "traffic.npz", "--window", "1h"]
    proc = run([*args, "--calibration", "99", "--store", str(store)], workdir)
    assert proc.returncode == 0, proc.stderr
    # 2400 rows at 6 s = 4 hours: four tumbling hour windows; the last two are shifted.
    assert "4 windows, 2 in alert" in proc.stdout.replace("\n", " ")
    assert "2026-02-01" in proc.stdout and "03:00:00" in proc.stdout
    with duckdb.connect(str(store), read_only=True) as con:
        rows = con.execute(
            "SELECT stream, window_start, window_end, drifted, n_current FROM results"
            " ORDER BY window_start"
        ).fetchall()
    assert [r[0] for r in rows] == ["stream"] * 4
    assert [r[3] for r in rows][2:] == [True, True]
    assert [r[4] for r in rows] == [600] * 4
    assert all(r[2] - r[1] == (rows[0][2] - rows[0][1]) for r in rows)


def test_count_windows_from_parquet_as_json(workdir: Path) -> None:
    store = workdir / "b.duckdb"
    args = ["stream", "-r", "ref.npz", "traffic.parquet", "--window", "800", "--step", "400"]
    proc = run(
        [*args, "--calibration", "99", "--json", "--stream", "api", "--store", str(store)], workdir
    )
    assert proc.returncode == 0, proc.stderr
    windows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(w["start"], w["end"]) for w in windows] == [(i * 400, i * 400 + 800) for i in range(5)]
    assert windows[-1]["result"]["drifted"] and windows[-1]["alert"]
    assert all(i.startswith("doc-") for i in windows[0]["example_ids"])
    with duckdb.connect(str(store), read_only=True) as con:
        n, streams = con.execute("SELECT count(*), list(DISTINCT stream) FROM results").fetchone()
    assert n == 5 and streams == ["api"]


def test_bad_input_exits_2_with_a_message(workdir: Path) -> None:
    cases = [
        (["--window", "1h", "week0.npy"], "has no timestamps"),
        (["--window", "5q", "traffic.npz"], "--window must be a row count"),
        (["--window", "600", "--step", "500", "traffic.npz"], "divide it"),
    ]
    stamps = np.arange(100.0)[::-1]
    np.savez(workdir / "backwards.npz", embeddings=np.zeros((100, 32)) + 0.1, timestamps=stamps)
    cases.append((["--window", "1h", "backwards.npz"], "non-decreasing"))
    for extra, message in cases:
        proc = run(["stream", "-r", "ref.npz", "--store", "c.duckdb", *extra], workdir)
        assert proc.returncode == 2, (extra, proc.stderr)
        assert message in proc.stderr.replace("\n", " ")
        assert "Traceback" not in proc.stderr
