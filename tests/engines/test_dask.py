"""The Dask engine on a real LocalCluster (two worker processes): same sketches, same decisions.

Every distributed result is compared with an independent single-process computation on the
same rows: one ``SketchSet`` fed every row (sums, moments), exact numpy quantiles (the KLL
rank-error bound), the population the reservoir samples from, and ``StreamMonitor`` (decisions).
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embdrift import DimensionMismatchError, DriftResult, InvalidEmbeddingsError, Reference
from embdrift.errors import MissingExtraError
from embdrift.stream import SketchSet, StreamMonitor, rank_error
from embdrift.synthetic import World, make_scenario
from support import IN_CI

if not IN_CI:  # under CI the dask extra is installed (Makefile): a missing one fails loudly
    pytest.importorskip("distributed")
import dask  # noqa: E402
import dask.array as da  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

from embdrift.engines import dask as engine  # noqa: E402

pytestmark = pytest.mark.integration

ALPHA = 0.05
N_CAL = 199
#: Statistics computed from feature sums and moments only (exact under merge, up to rounding);
#: the others read KLL quantiles, which two runs approximate independently within eps(k).
SUM_METRICS = ("mmd", "mean_shift", "spread_ratio", "frechet", "residual_mean_shift")
CLEAR_LOW, CLEAR_HIGH = 0.005, 0.25


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as cl,
    ):
        yield cl


@pytest.fixture(scope="module")
def world() -> World:
    return World.make(dim=32, n_clusters=5, rank=4, seed=3)


@pytest.fixture(scope="module")
def reference(world: World) -> Reference:
    x, _ = world.sample(1600, weights=np.array([1.0, 1.0, 1.0, 1.0, 0.0]), seed=10)
    return Reference.fit(x, seed=0, n_components=6)


def write_parquet(path: Path, x: np.ndarray, *, row_group_size: int = 500, **columns) -> Path:
    table = pa.table(
        {"embedding": pa.array(list(x), type=pa.list_(pa.float32())), **columns},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def split_to_files(root: Path, x: np.ndarray, n_files: int) -> list[Path]:
    """Rows in order across files part-000 ... (each file several row groups)."""
    out = []
    for i, chunk in enumerate(np.array_split(x, n_files)):
        out.append(write_parquet(root / f"part-{i:03d}.parquet", chunk, row_group_size=700))
    return out


def assert_same_decision(remote: DriftResult, local: DriftResult) -> None:
    """The decisions of two sketchings of the same rows agree wherever sketch error cannot
    flip them.

    Statistics from sums and moments are equal up to rounding, and their null replicates are
    seeded, so their p-values and decisions must be equal. The quantile statistics come from
    KLL sketches, which are randomised: two sketchings of the same rows differ within the
    rank error eps(k), and at a few hundred rows per window that moves their p-values a lot
    (the null is calibrated through the sketches, so each test keeps its level). The combined
    (min-p) decision must therefore agree only when it is clear-cut: local p <= CLEAR_LOW or
    >= CLEAR_HIGH.
    """
    for name in SUM_METRICS:
        got, want = remote.metrics[name], local.metrics[name]
        assert got.p_value == pytest.approx(want.p_value, abs=1.5 / (N_CAL + 1)), name
    if local.p_value <= CLEAR_LOW or local.p_value >= CLEAR_HIGH:
        assert remote.drifted == local.drifted, (remote.p_value, local.p_value)


def single_process(reference: Reference, x: np.ndarray) -> tuple[StreamMonitor, SketchSet]:
    monitor = StreamMonitor(reference, alpha=ALPHA, n_calibration=N_CAL)
    sketches = SketchSet(monitor.basis)
    for lo in range(0, x.shape[0], 1000):
        sketches.update(x[lo : lo + 1000])
    return monitor, sketches


# ---------------------------------------------------------------------------- sketches
@pytest.mark.parametrize("split_row_groups", [False, True])
def test_sums_quantiles_and_reservoir_match_single_process(
    client: Client,
    world: World,
    reference: Reference,
    tmp_path: Path,
    split_row_groups: bool,
) -> None:
    x, _ = world.sample(12_000, weights=np.ones(5), seed=11)
    split_to_files(tmp_path, x, 5)
    dist = engine.sketch_dataset(
        str(tmp_path / "part-*.parquet"),
        reference,
        client=client,
        reservoir_size=2000,
        split_row_groups=split_row_groups,
        fan_in=2,
    )
    _, one = single_process(reference, x)
    assert dist.count == one.count == x.shape[0]
    # Sums and moments: equal up to float rounding (float32 features, float64 sums).
    np.testing.assert_allclose(dist.rff.feature_sum, one.rff.feature_sum, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dist.moments.mean, one.moments.mean, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        dist.moments.covariance, one.moments.covariance, rtol=1e-9, atol=1e-9
    )
    np.testing.assert_allclose(dist.means.centred_sum, one.means.centred_sum, rtol=1e-6, atol=1e-6)
    # Quantiles: each sketch quantile's exact rank is within the KLL bound eps(k).
    exact = dist.basis.exact_features(x).projections
    eps = rank_error(dist.quantile_k)
    ranks = np.linspace(0.02, 0.98, 49)
    for j, sk in enumerate(dist.quantiles.projections):
        column = np.sort(exact[:, j])
        got = np.searchsorted(column, sk.quantiles(ranks), side="right") / column.size
        assert np.abs(got - ranks).max() <= eps + 1.0 / column.size, j
    # Reservoir: 2000 distinct rows of the dataset; its mean of each projection within a
    # 4.5-sigma band of the population mean (finite-population correction included).
    res = dist.reservoir
    assert res.size == 2000 and np.unique(res.ids).size == 2000
    row_of = {f"{p.resolve()}:{r}" for p in tmp_path.glob("part-*") for r in range(2400)}
    assert set(res.ids.tolist()) <= row_of
    z_sample = dist.basis.exact_features(res.rows).projections
    fpc = np.sqrt(1.0 - 2000 / x.shape[0])
    se = exact.std(axis=0) / np.sqrt(2000) * fpc
    assert (np.abs(z_sample.mean(axis=0) - exact.mean(axis=0)) / se).max() < 4.5


def test_reservoir_rows_are_the_files_rows(
    client: Client, world: World, reference: Reference, tmp_path: Path
) -> None:
    x, _ = world.sample(3000, weights=np.ones(5), seed=12)
    files = split_to_files(tmp_path, x, 3)
    dist = engine.sketch_dataset(
        [str(f) for f in files], reference, client=client, reservoir_size=300
    )
    offsets = {str(f.resolve()): 1000 * i for i, f in enumerate(files)}
    for row_id, row in zip(dist.reservoir.ids, dist.reservoir.rows, strict=True):
        path, local = str(row_id).rsplit(":", 1)
        np.testing.assert_array_equal(row, x[offsets[path] + int(local)])


# ---------------------------------------------------------------------------- decisions
@pytest.mark.parametrize(
    ("scenario", "strength", "expected"),
    [("none", 1.0, False), ("mean_shift", 3.0, True), ("spread", 2.0, True)],
)
def test_decisions_agree_with_the_single_process_sketch_check(
    client: Client, tmp_path: Path, scenario: str, strength: float, expected: bool
) -> None:
    # Windows of at most half the reference's held-out rows: the calibration's own regime.
    ref_x, cur = make_scenario(
        scenario, n_reference=6000, n_current=1500, dim=32, strength=strength, seed=4
    )
    reference = Reference.fit(ref_x, seed=0, n_components=6)
    split_to_files(tmp_path, cur, 4)
    monitor, one = single_process(reference, cur)
    local = monitor.test(one)
    dist = engine.check_dataset(str(tmp_path / "*.parquet"), monitor, client=client)
    assert dist.method == "sketch" and dist.n_current == cur.shape[0]
    # Strong drift is found; with none, the check shows no strong evidence (a seeded null run
    # alarms at rate alpha, so only p <= CLEAR_LOW would be a failure here).
    assert local.drifted if expected else local.p_value > CLEAR_LOW
    assert_same_decision(dist, local)
    for name in SUM_METRICS:
        # Statistics from sums and moments: the same values up to rounding, the same p-values.
        assert dist.metrics[name].value == pytest.approx(local.metrics[name].value, rel=1e-5)
        assert dist.metrics[name].p_value == pytest.approx(local.metrics[name].p_value, abs=0.01)


def test_real_text_sums_and_decisions(
    client: Client, real_text: dict[str, np.ndarray], tmp_path: Path
) -> None:
    x, section = real_text["embeddings"], real_text["section"]
    rng = np.random.default_rng(0)
    mix = ["python", "libs", "devel", "doc", "utils", "net", "games", "science"]
    pool = {s: rng.permutation(np.flatnonzero(section == s)) for s in [*mix, "rust"]}
    ref_rows = np.concatenate([pool[s][:400] for s in mix])  # 1,600 held-out rows
    same_rows = np.concatenate([pool[s][400:500] for s in mix])  # windows of 800
    reference = Reference.fit(x[ref_rows], seed=0)
    new_rows = np.concatenate([same_rows[:720], pool["rust"][:80]])  # 10% of a new section
    for name, rows, expected in [("same", same_rows, False), ("new", new_rows, True)]:
        cur = x[rng.permutation(rows)]
        split_to_files(tmp_path / name, cur, 3)
        monitor, one = single_process(reference, cur)
        dist = engine.sketch_dataset(
            str(tmp_path / name / "*.parquet"), reference, client=client, fan_in=2
        )
        np.testing.assert_allclose(dist.rff.feature_sum, one.rff.feature_sum, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(dist.moments.mean, one.moments.mean, atol=1e-9)
        local, remote = monitor.test(one), monitor.test(dist)
        assert local.drifted if expected else local.p_value > CLEAR_LOW, name
        assert_same_decision(remote, local)
        for metric in SUM_METRICS:
            got, want = remote.metrics[metric], local.metrics[metric]
            assert got.value == pytest.approx(want.value, rel=1e-4), metric


# ---------------------------------------------------------------------------- windows
def test_one_pass_gives_one_result_per_day(client: Client, world: World, tmp_path: Path) -> None:
    """Five days, the last two shifted; files cut across day boundaries and shuffled."""
    rng = np.random.default_rng(5)
    base = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
    reference = Reference.fit(world.sample(4000, weights=base, seed=20)[0], n_components=6)
    days = []
    for day in range(5):
        shift = None if day < 3 else 0.6 * world.centers[0]
        xd, _ = world.sample(900, weights=base, seed=100 + day, shift=shift)
        secs = np.sort(rng.uniform(0, 86_400, size=900))
        days.append((xd, np.datetime64("2026-03-01", "s") + day * 86_400 + secs.astype(int)))
    x = np.vstack([d[0] for d in days])
    ts = np.concatenate([d[1] for d in days])
    order = rng.permutation(x.shape[0])  # rows of a day spread over every file
    for i, idx in enumerate(np.array_split(order, 6)):
        write_parquet(
            tmp_path / f"day=mixed/part-{i}.parquet",
            x[idx],
            ts=pa.array(ts[idx].astype("datetime64[us]")),
        )
    windows = engine.check_windows(
        str(tmp_path / "day=*/part-*.parquet"),
        StreamMonitor(reference, window=dt.timedelta(days=1), alpha=ALPHA, n_calibration=N_CAL),
        window=dt.timedelta(days=1),
        timestamp_column="ts",
        client=client,
    )
    # The single-process monitor fed the same rows in time order.
    mon = StreamMonitor(reference, window=dt.timedelta(days=1), alpha=ALPHA, n_calibration=N_CAL)
    mon.update(x, timestamps=ts)
    mon.flush()
    local = mon.check()
    assert len(windows) == len(local) == 5
    for w, lw in zip(windows, local, strict=True):
        assert w.start == lw.start and w.end == lw.end
        assert w.result.n_current == lw.result.n_current == 900
        for metric in SUM_METRICS:
            got, want = w.result.metrics[metric].value, lw.result.metrics[metric].value
            assert got == pytest.approx(want, rel=1e-5), metric
        assert_same_decision(w.result, lw.result)
    # The shifted days are found; quiet days alarm only at the calibrated rate (the stream
    # tests check that rate), so at most one of the three here.
    assert [w.alert for w in windows] == [w.result.drifted for w in windows]  # consecutive=1
    assert [w.result.drifted for w in windows[3:]] == [True, True]
    assert sum(w.result.drifted for w in windows[:3]) <= 1


# ---------------------------------------------------------------------------- failures
def _block_killing_its_worker(path: str, marker: str) -> np.ndarray:
    """Load a block; on the first attempt, kill the worker process running this task."""
    if not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return np.load(path, allow_pickle=False)


def test_a_worker_killed_mid_computation_gives_the_same_result(
    client: Client, world: World, reference: Reference, tmp_path: Path
) -> None:
    x, _ = world.sample(16_000, weights=np.ones(5), seed=13)
    blocks = []
    for i, chunk in enumerate(np.array_split(x, 8)):
        np.save(tmp_path / f"b{i}.npy", chunk)
        marker = str(tmp_path / "killed.txt") if i == 5 else str(tmp_path / "never")
        if i != 5:
            Path(marker).write_text("")  # these blocks never kill
        load = dask.delayed(_block_killing_its_worker, pure=False)
        blocks.append(
            da.from_delayed(load(str(tmp_path / f"b{i}.npy"), marker), chunk.shape, np.float32)
        )
    array = da.concatenate(blocks, axis=0)
    pids_before = set(client.run(os.getpid).values())
    killed = engine.sketch_dataset(array, reference, client=client, reservoir_size=500)
    assert (tmp_path / "killed.txt").exists()
    assert int((tmp_path / "killed.txt").read_text()) in pids_before
    client.wait_for_workers(2, timeout=60)
    assert set(client.run(os.getpid).values()) != pids_before  # the nanny started a new one
    clean = engine.sketch_dataset(array, reference, client=client, reservoir_size=500)
    assert killed.count == clean.count == x.shape[0]
    np.testing.assert_allclose(killed.rff.feature_sum, clean.rff.feature_sum, rtol=1e-12)
    np.testing.assert_allclose(killed.moments.covariance, clean.moments.covariance, rtol=1e-12)
    # Reservoir keys are seeded per partition: the recomputed partition gives the same rows.
    assert sorted(killed.reservoir.ids.tolist()) == sorted(clean.reservoir.ids.tolist())
    monitor, one = single_process(reference, x)
    assert_same_decision(monitor.test(killed), monitor.test(one))


def test_bad_partitions_are_named_with_file_and_row(
    client: Client, world: World, reference: Reference, tmp_path: Path
) -> None:
    x, _ = world.sample(3000, weights=np.ones(5), seed=14)
    files = split_to_files(tmp_path / "ok", x, 3)
    bad = x[:1000].copy()
    bad[837, 4] = np.nan
    write_parquet(tmp_path / "nan" / "part-nan.parquet", bad, row_group_size=300)
    narrow = world.sample(500, weights=np.ones(5), seed=15)[0][:, :16]
    write_parquet(tmp_path / "dim" / "part-dim.parquet", narrow)
    sources = [str(f) for f in files]
    for split in (False, True):
        with pytest.raises(InvalidEmbeddingsError, match=r"part-nan\.parquet.*row 837"):
            engine.sketch_dataset(
                [*sources, str(tmp_path / "nan" / "part-nan.parquet")],
                reference,
                client=client,
                split_row_groups=split,
            )
    with pytest.raises(DimensionMismatchError, match=r"part-dim\.parquet.*16 dimensions.*32"):
        engine.sketch_dataset(
            [*sources, str(tmp_path / "dim" / "part-dim.parquet")], reference, client=client
        )
    # The cluster is intact and the good files still sketch.
    assert engine.sketch_dataset(sources, reference, client=client).count == 3000


def test_missing_dask_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'embdrift\[dask\]'"):
        with engine.connect():
            pass


def test_unknown_file_and_empty_glob_are_rejected(reference: Reference, tmp_path: Path) -> None:
    from embdrift import FileFormatError

    with pytest.raises(FileFormatError, match="No file matches"):
        engine.list_partitions(str(tmp_path / "nothing-*.parquet"))
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(FileFormatError, match="unknown file type '.csv'"):
        engine.list_partitions(str(tmp_path / "*.csv"))


# ---------------------------------------------------------------------------- fit
def test_fit_reference_on_a_distributed_sample(
    client: Client, world: World, tmp_path: Path
) -> None:
    x, _ = world.sample(20_000, weights=np.array([1.0, 1.0, 1.0, 1.0, 0.0]), seed=16)
    split_to_files(tmp_path, x, 6)
    pattern = str(tmp_path / "*.parquet")
    ref = engine.fit_reference(pattern, sample_size=6000, client=client, n_components=6)
    again = engine.fit_reference(pattern, sample_size=6000, client=client, n_components=6)
    assert ref.reference_id == again.reference_id  # seeded reservoirs: reproducible
    assert isinstance(ref, Reference) and ref.n_total == 6000 and ref.dim == 32
    full = Reference.fit(x, seed=0, n_components=6)
    # The top-4 principal subspace (the world has 4 strong cluster directions) agrees with
    # the one fitted on all 20,000 rows: the smallest principal cosine is close to 1.
    a, b = ref.projection.components_[:4], full.projection.components_[:4]
    cosines = np.linalg.svd(a @ b.T, compute_uv=False)
    assert cosines.min() > 0.98
    # Its held-out rows are rows of the dataset (a sample, not a summary).
    rows = {r.tobytes() for r in x}
    assert all(r.tobytes() in rows for r in ref.sample)


# ---------------------------------------------------------------------------- CLI
def test_cli_check_and_daily_series_on_the_cluster(
    client: Client, world: World, reference: Reference, tmp_path: Path
) -> None:
    base = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
    for day in range(3):
        shift = 0.6 * world.centers[0] if day == 2 else None
        xd, _ = world.sample(800, weights=base, seed=200 + day, shift=shift)
        stamps = np.datetime64("2026-03-01T00:00", "s") + day * 86_400 + np.arange(800) * 100
        for part, idx in enumerate(np.array_split(np.arange(800), 2)):
            write_parquet(
                tmp_path / f"data/day={day}/part-{part}.parquet",
                xd[idx],
                ts=pa.array(stamps[idx].astype("datetime64[us]")),
            )
    big = Reference.fit(world.sample(4000, weights=base, seed=21)[0], n_components=6)
    big.save(tmp_path / "ref.npz")
    address = client.scheduler.address
    base_args = [sys.executable, "-m", "embdrift", "check", "--engine", "dask"]
    common = ["--scheduler", address, "--reference", "ref.npz"]
    store = tmp_path / "s.duckdb"
    # Without --permutations the check takes the stream monitor's default calibration.
    proc = subprocess.run(
        [*base_args, *common, "data/day=0/part-*.parquet", "--json", "--store", str(store)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["method"] == "sketch" and result["n_current"] == 800
    assert result["reference_id"] == big.reference_id
    # The monitor's default, which check --help states as 500.
    default = inspect.signature(StreamMonitor).parameters["n_calibration"].default
    assert result["n_permutations"] == default == 500
    common += ["--permutations", str(N_CAL)]
    proc = subprocess.run(
        [*base_args, *common, "data/day=*/part-*.parquet", "--window", "1d"]
        + ["--timestamp-column", "ts", "--store", str(store), "--stream", "daily"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert "3 windows" in proc.stdout and "2026-03-03" in proc.stdout
    with duckdb.connect(str(store), read_only=True) as con:
        rows = con.execute(
            "SELECT window_start, drifted, n_current, result_json FROM results"
            " WHERE stream = 'daily' ORDER BY window_start"
        ).fetchall()
    assert [r[2] for r in rows] == [800, 800, 800]
    assert [json.loads(r[3])["n_permutations"] for r in rows] == [N_CAL] * 3
    assert [r[0].day for r in rows] == [1, 2, 3]
    assert rows[2][1] is True  # the shifted day
    # Bad input: a message naming the file and exit status 2, no traceback.
    write_parquet(
        tmp_path / "data/day=9/part-0.parquet", world.sample(50, weights=base, seed=1)[0][:, :8]
    )
    proc = subprocess.run(
        [*base_args, *common, "data/day=9/part-*.parquet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 2
    assert "part-0.parquet" in proc.stderr and "8 dimensions" in proc.stderr
    assert "Traceback" not in proc.stderr
