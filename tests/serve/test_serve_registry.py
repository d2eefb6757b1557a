"""StreamRegistry in process: replay equivalence (with explanations), detection of a planted
new cluster, concurrency, time windows, refusal of mismatched state."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading

import numpy as np
import pytest

from embdrift import Reference
from embdrift.errors import StateFormatError, TimestampOrderError
from embdrift.serve import StreamRegistry
from embdrift.serve.batch import Batch
from embdrift.synthetic import World
from serve_support import DIM, WINDOW

KNOWN = np.array([1.0, 1.0, 1.0, 1.0, 0.0])  # the reference's clusters
NEW = np.array([1.0, 1.0, 1.0, 1.0, 4.0])  # cluster 4 (absent from the reference) dominates


def sample(world: World, n: int, seed: int, weights: np.ndarray = KNOWN) -> np.ndarray:
    x, _ = world.sample(n, weights=weights, seed=seed)
    return x.astype(np.float32)


def crash(reg: StreamRegistry) -> None:
    """Drop a registry like kill -9 would: no checkpoint; only close the open log files."""
    reg.drain()
    for stream in reg._streams.values():
        assert stream.wal is not None
        stream.wal.close()


def test_replay_reproduces_windows_explanations_and_points(
    serve_ref, serve_world, settings, tmp_path
) -> None:
    explained = dataclasses.replace(settings, explain=True)
    kw = dict(references={"s": serve_ref}, settings=explained, state_dir=tmp_path)
    live = StreamRegistry(**kw, checkpoint_every=3, background=False).open()
    for i in range(7):  # checkpoints after batches 3 and 6; batch 7 only in the log
        weights = NEW if i >= 4 else KNOWN
        live.ingest("s", Batch(sample(serve_world, 130, seed=20 + i, weights=weights)))
    before = live.snapshot("s")
    crash(live)
    again = StreamRegistry(**kw, background=False).open()
    after = again.snapshot("s")
    assert after.count == before.count == 7 * 130
    assert [w.new_cluster_share for w in after.history] == [
        w.new_cluster_share for w in before.history
    ]
    assert after.history[-1].new_cluster_share is not None
    np.testing.assert_array_equal(after.points, before.points)
    assert after.point_labels == before.point_labels
    assert after.explanation == before.explanation
    assert after.batches == before.batches and after.windows == before.windows
    again.close()


def test_planted_new_cluster_raises_alert_and_new_cluster_share(
    serve_ref, serve_world, settings
) -> None:
    reg = StreamRegistry(
        references={"s": serve_ref},
        settings=dataclasses.replace(settings, explain=True),
    ).open()
    reg.ingest("s", Batch(sample(serve_world, 3 * WINDOW, seed=30)))
    reg.drain()
    calm = reg.snapshot("s")
    reg.ingest("s", Batch(sample(serve_world, WINDOW, seed=31, weights=NEW)))
    reg.drain()
    hot = reg.snapshot("s")
    assert calm.alert is False and hot.alert is True
    assert [w.window.result.drifted for w in hot.history][-1] is True
    assert calm.history[-1].new_cluster_share is not None
    share = hot.history[-1].new_cluster_share
    # 4/(4+4) = half the rows come from the new cluster; explain finds most of them
    assert share is not None and share > 0.3 > 5 * calm.history[-1].new_cluster_share + 0.01
    assert any(label.startswith("new") for label in hot.point_labels)
    assert hot.explanation is not None and hot.explanation["new_clusters"]
    reg.close()


def test_concurrent_ingest_from_threads(serve_ref, serve_world, settings, tmp_path) -> None:
    kw = dict(default_reference=serve_ref, settings=settings, state_dir=tmp_path)
    reg = StreamRegistry(**kw).open()
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for j in range(8):
                x = sample(serve_world, 37, seed=100 * k + j)
                reg.ingest("shared", Batch(x))
                reg.ingest(f"own-{k}", Batch(x))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    shared = reg.snapshot("shared")
    assert shared.count == 4 * 8 * 37 and shared.batches == 32
    assert shared.windows == 4 * 8 * 37 // WINDOW
    assert [reg.snapshot(f"own-{k}").count for k in range(4)] == [8 * 37] * 4
    crash(reg)
    again = StreamRegistry(**kw).open()
    assert again.snapshot("shared").count == shared.count
    np.testing.assert_array_equal(
        again._streams["shared"].monitor._current.rff.feature_sum,
        reg._streams["shared"].monitor._current.rff.feature_sum,
    )
    again.close()


def test_time_windows_with_posted_and_assigned_timestamps(
    serve_ref, serve_world, settings, tmp_path
) -> None:
    now = [1_700_000_000.0]
    timed = dataclasses.replace(settings, window=dt.timedelta(seconds=60))
    kw = dict(references={"s": serve_ref}, settings=timed, state_dir=tmp_path)
    reg = StreamRegistry(**kw, clock=lambda: now[0]).open()
    t0 = 1_700_000_000.0  # 20 s into a minute (minutes start at multiples of 60 s)
    x = sample(serve_world, 120, seed=40)
    ts = np.round((t0 + np.arange(120) * 0.5) * 1e9).astype(np.int64)  # 60 s of rows
    clicks = {"click": (np.arange(120) % 2).astype(float)}
    receipt = reg.ingest("s", Batch(x, None, ts, clicks))
    assert receipt.windows_closed == 1  # the minute ending at t0 + 40 s closed
    w = reg.snapshot("s").history[-1]
    assert w.window.result.n_current == 80
    assert w.window.end == np.datetime64(int((t0 + 40) * 1e9), "ns")
    assert w.outcome_rates["click"] == pytest.approx(0.5)
    with pytest.raises(TimestampOrderError, match="before the last timestamp"):
        reg.ingest("s", Batch(x[:2], None, ts[:2]))
    now[0] = t0 + 200.0  # no timestamps: the time the request was received
    assert reg.ingest("s", Batch(x[:50])).windows_closed == 1
    crash(reg)
    again = StreamRegistry(**kw).open()
    assert again.snapshot("s").count == 170 and again.snapshot("s").windows == 2
    again.close()


def test_restart_with_other_settings_or_reference_is_refused(
    serve_ref, serve_world, settings, tmp_path
) -> None:
    reg = StreamRegistry(references={"s": serve_ref}, settings=settings, state_dir=tmp_path)
    reg.open().ingest("s", Batch(sample(serve_world, 10, seed=50)))
    reg.close()
    other = dataclasses.replace(settings, window=2 * WINDOW)
    with pytest.raises(StateFormatError, match="window"):
        StreamRegistry(references={"s": serve_ref}, settings=other, state_dir=tmp_path).open()
    x = np.random.default_rng(0).normal(size=(600, DIM))
    other_ref = Reference.fit(x, seed=0, n_components=6)
    with pytest.raises(StateFormatError, match="original reference"):
        StreamRegistry(references={"s": other_ref}, settings=settings, state_dir=tmp_path).open()
    with pytest.raises(Exception, match="no default reference"):  # state without a reference
        StreamRegistry(references={"t": serve_ref}, settings=settings, state_dir=tmp_path).open()


def test_in_process_batches_are_checked_before_logging(serve_ref, settings, tmp_path) -> None:
    from embdrift.errors import (
        BadStreamNameError,
        DimensionMismatchError,
        InvalidBodyError,
        InvalidEmbeddingsError,
    )

    reg = StreamRegistry(references={"s": serve_ref}, settings=settings, state_dir=tmp_path)
    reg.open()
    wal = reg._streams["s"].wal
    good = np.zeros((4, DIM), np.float32)
    bad_rows = good.copy()
    bad_rows[2, 5] = np.nan
    cases = [
        (InvalidEmbeddingsError, Batch(bad_rows)),
        (DimensionMismatchError, Batch(np.zeros((4, DIM + 1), np.float32))),
        (InvalidEmbeddingsError, Batch(np.zeros((2, 2, DIM), np.float32))),
        (InvalidBodyError, Batch(good, ids=np.array(["a", "b"]))),
        (InvalidBodyError, Batch(good, timestamps=np.zeros(3, np.int64))),
        (InvalidBodyError, Batch(good, outcomes={"ok": np.ones(3)})),
        (BadStreamNameError, Batch(good, outcomes={"Not OK": np.ones(4)})),
    ]
    for error, batch in cases:
        with pytest.raises(error):
            reg.ingest("s", batch)
    assert wal.size_bytes() == 0 and reg.snapshot("s").count == 0
    assert reg.ingest("s", Batch(good.astype(np.float64), ids=np.arange(4))).accepted == 4
    reg.close()
