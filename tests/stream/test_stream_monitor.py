"""StreamMonitor: count and time windows, alert state, checkpoints, memory bound, bad input."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from embdrift import Reference
from embdrift.errors import (
    DimensionMismatchError,
    IncompatibleSketchError,
    InvalidParameterError,
    SketchFormatError,
    TimestampOrderError,
)
from embdrift.stream import SketchSet, StreamBasis, StreamMonitor

WEIGHTS = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
SMALL = {"n_frequencies": 128, "n_projections": 8, "quantile_k": 64, "n_calibration": 99}


def _rows(world, n, seed, shift=0.0):
    x, _ = world.sample(n, weights=WEIGHTS, seed=seed)
    return x + np.float32(shift)


def _monitor(ref, **kw):
    opts = {**SMALL, "reservoir_size": 30, **kw}
    return StreamMonitor(ref, **opts)


def test_count_windows_tumbling_and_sliding(world32, ref32):
    x = _rows(world32, 1000, 1)
    tumbling = _monitor(ref32, window=200)
    for lo in range(0, 1000, 130):  # batch boundaries do not line up with windows
        tumbling.update(x[lo : lo + 130])
    got = tumbling.check()
    assert [(w.start, w.end) for w in got] == [(i * 200, (i + 1) * 200) for i in range(5)]
    assert all(w.result.n_current == 200 for w in got)
    assert tumbling.check() == []  # results are handed out once
    sliding = _monitor(ref32, window=400, step=100).update(x)
    ends = [w.end for w in sliding.check()]
    assert ends == [400, 500, 600, 700, 800, 900, 1000]
    # The same rows give the same exact (sum-based) statistics, however they were batched.
    one = _monitor(ref32, window=200).update(x[:200]).check()[0].result.metrics
    assert one["mmd"].value == pytest.approx(got[0].result.metrics["mmd"].value, rel=1e-9)
    assert one["frechet"].value == pytest.approx(got[0].result.metrics["frechet"].value, rel=1e-9)


def test_time_windows_with_gaps_and_flush(world32, ref32):
    x = _rows(world32, 900, 2)
    t0 = np.datetime64("2026-03-01T00:00:00", "ns")
    seconds = np.concatenate([np.linspace(0, 3500, 300), np.linspace(3600, 7100, 300)])
    seconds = np.concatenate([seconds, np.linspace(4 * 3600, 4 * 3600 + 1800, 300)])
    stamps = t0 + (seconds * 1e9).astype("timedelta64[ns]")
    mon = _monitor(ref32, window=dt.timedelta(hours=1))
    mon.update(x[:450], timestamps=stamps[:450]).update(x[450:], timestamps=stamps[450:])
    closed = mon.check()
    assert [w.result.n_current for w in closed] == [300, 300]  # hours 0 and 1; 2-3 empty
    assert closed[1].start == t0 + np.timedelta64(1, "h")
    assert closed[1].end == t0 + np.timedelta64(2, "h")
    last = mon.flush().check()
    assert [(w.start, w.result.n_current) for w in last] == [(t0 + np.timedelta64(4, "h"), 300)]
    sliding = _monitor(ref32, window=dt.timedelta(hours=2), step=dt.timedelta(hours=1))
    sliding.update(x[:600], timestamps=stamps[:600]).update(x[600:], timestamps=stamps[600:])
    assert [w.result.n_current for w in sliding.check()] == [300, 600, 300]
    # Numeric timestamps are seconds since the epoch.
    secs = _monitor(ref32, window=dt.timedelta(minutes=30))
    secs.update(x[:300], timestamps=np.linspace(0, 3599, 300)).flush()
    assert [w.result.n_current for w in secs.check()] == [150, 150]


def test_windows_below_min_rows_are_skipped(world32, ref32):
    x = _rows(world32, 230, 3)
    stamps = np.concatenate([np.zeros(10), np.full(220, 7200.0)])
    mon = _monitor(ref32, window=dt.timedelta(hours=1), min_window_rows=20)
    mon.update(x, timestamps=stamps).flush()
    assert [w.result.n_current for w in mon.check()] == [220]


def test_drift_raises_and_clears_the_alert_after_consecutive_windows(world32, ref32):
    mon = _monitor(ref32, window=200, consecutive=2, alpha=0.05)
    mon.update(_rows(world32, 200, 4))
    mon.update(_rows(world32, 400, 5, shift=0.08))
    mon.update(_rows(world32, 200, 6))
    got = mon.check()
    assert [w.result.drifted for w in got[1:3]] == [True, True]
    assert [w.alert for w in got[1:]] == [False, True, False]
    assert got[-1].result.drifted is False and mon.alert is False


@pytest.mark.parametrize(("alpha", "r"), [(0.05, 1), (0.05, 2), (0.1, 3)])
def test_expected_windows_to_false_alert_matches_the_markov_chain(ref32, alpha, r):
    # Expected steps to r successes in a row: solve the absorbing Markov chain directly.
    q = np.zeros((r, r))
    for state in range(r):
        q[state, 0] += 1 - alpha
        if state + 1 < r:
            q[state, state + 1] += alpha
    steps = np.linalg.solve(np.eye(r) - q, np.ones(r))[0]
    mon = _monitor(ref32, window=100, alpha=alpha, consecutive=r, n_calibration=499)
    assert mon.expected_windows_to_false_alert == pytest.approx(steps, rel=1e-9)


def test_state_bytes_restore_continues_identically(world32, ref32, other_ref):
    x = _rows(world32, 700, 7)
    whole = _monitor(ref32, window=200, step=100).update(x)
    first = _monitor(ref32, window=200, step=100).update(x[:350])
    state = first.state_bytes()
    restored = StreamMonitor.from_state(ref32, state).update(x[350:])
    a, b = whole.check(), restored.check()
    assert [w.index for w in a] == [w.index for w in b] and len(a) == 6
    assert [(w.start, w.end) for w in a] == [(w.start, w.end) for w in b]
    for wa, wb in zip(a, b, strict=True):
        for name in ("mmd", "mean_shift", "spread_ratio", "frechet"):
            assert wa.result.metrics[name].value == pytest.approx(
                wb.result.metrics[name].value, rel=1e-9
            )
    assert restored.count == 700
    with pytest.raises(IncompatibleSketchError) as info:
        StreamMonitor.from_state(other_ref, state)
    assert ref32.reference_id in str(info.value)
    assert other_ref.reference_id in str(info.value)
    with pytest.raises(SketchFormatError):
        StreamMonitor.from_state(ref32, state[:100])


def test_time_state_round_trip(world32, ref32):
    x = _rows(world32, 400, 8)
    stamps = np.datetime64("2026-03-01", "ns") + np.arange(400) * np.timedelta64(20, "s")
    mon = _monitor(ref32, window=dt.timedelta(hours=1)).update(x[:250], timestamps=stamps[:250])
    back = StreamMonitor.from_state(ref32, mon.state_bytes())
    assert back.check()[0].end == mon.check()[0].end
    with pytest.raises(TimestampOrderError, match="before the last timestamp"):
        back.update(x[250:], timestamps=stamps[250:] - np.timedelta64(2, "h"))
    back.update(x[250:], timestamps=stamps[250:]).flush()
    assert sum(w.result.n_current for w in back.check()) == 400 - 180


def test_bad_input_leaves_the_monitor_unchanged(world32, ref32):
    mon = _monitor(ref32, window=dt.timedelta(minutes=10))
    mon.update(_rows(world32, 50, 9), timestamps=np.arange(50.0))
    before = mon.state_bytes()
    x = _rows(world32, 5, 10)
    with pytest.raises(TimestampOrderError, match="non-decreasing; row 2"):
        mon.update(x, timestamps=[60.0, 61.0, 59.0, 62.0, 63.0])
    with pytest.raises(TimestampOrderError, match="before the last"):
        mon.update(x, timestamps=np.arange(5.0))
    with pytest.raises(InvalidParameterError, match="Time windows need 'timestamps'"):
        mon.update(x)
    with pytest.raises(InvalidParameterError, match="one timestamp per row"):
        mon.update(x, timestamps=[100.0])
    with pytest.raises(InvalidParameterError, match="NaN"):
        mon.update(x, timestamps=[100.0, np.nan, 101, 102, 103])
    with pytest.raises(InvalidParameterError, match="datetime64 or numeric"):
        mon.update(x, timestamps=["a", "b", "c", "d", "e"])
    with pytest.raises(DimensionMismatchError):
        mon.update(np.zeros((5, 3)), timestamps=np.arange(100.0, 105.0))
    with pytest.raises(InvalidParameterError, match="duplicate ids"):
        mon.update(x, timestamps=np.arange(100.0, 105.0), ids=[1, 2, 3, 4, 4])
    assert mon.state_bytes() == before
    assert mon.count == 50


def test_bad_settings_are_named(ref32):
    with pytest.raises(InvalidParameterError, match="'window' parameter"):
        StreamMonitor(ref32, window=0)
    with pytest.raises(InvalidParameterError, match="'window' parameter"):
        StreamMonitor(ref32, window=1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="divide it"):
        StreamMonitor(ref32, window=300, step=200)
    with pytest.raises(InvalidParameterError, match="same kind"):
        StreamMonitor(ref32, window=300, step=dt.timedelta(seconds=1))
    with pytest.raises(InvalidParameterError, match="n_calibration >= 39"):
        StreamMonitor(ref32, window=300, n_calibration=20)
    with pytest.raises(InvalidParameterError, match="'alpha'"):
        StreamMonitor(ref32, window=300, alpha=1.5)
    with pytest.raises(TypeError, match="Reference"):
        StreamMonitor("ref.npz", window=300)  # type: ignore[arg-type]


def test_state_is_bounded_after_a_million_rows(ref32):
    # Low dimension keeps 1M rows fast; one generated batch is reused (sketch state does not
    # depend on whether rows repeat). Default KLL k=200 and reservoir of 10,000 rows; few
    # random frequencies, since their state (2D sums) is fixed-size whatever the row count.
    rng = np.random.default_rng(0)
    block = ref32.sample[rng.integers(0, ref32.sample.shape[0], 10_000)]
    block = block + rng.normal(scale=0.01, size=block.shape).astype(np.float32)
    basis = StreamBasis(ref32, n_frequencies=64)
    sketches = SketchSet(basis).update(block)
    small = len(sketches.to_bytes())
    for _ in range(7):  # merging with a copy doubles the rows: 10k -> 1.28M
        sketches.merge(sketches.copy())
    assert sketches.count == 1_280_000
    large = len(sketches.to_bytes())
    assert large <= 1.2 * small and large < 50e6

    mon = StreamMonitor(ref32, window=50_000, step=25_000, n_calibration=99, n_frequencies=64)
    mon.update(block).update(block).update(block)
    at_30k = len(mon.state_bytes())
    for _ in range(100):
        mon.update(block)
        mon.check()
    assert mon.count == 1_030_000
    at_1m = len(mon.state_bytes())
    assert at_1m <= 1.2 * at_30k and at_1m < 50e6


def test_monitors_of_one_reference_share_one_null(world32, ref32, monkeypatch):
    """Streams on one reference with the same settings simulate each window size's null once
    (a service runs many streams), and the null goes with the last monitor that uses it."""
    import gc

    from embdrift.stream import monitor as monitor_module
    from embdrift.stream.calibration import SketchNull

    simulated: list[int] = []
    real_simulate = SketchNull._simulate

    def counting(self, m_b):
        simulated.append(m_b)
        return real_simulate(self, m_b)

    monkeypatch.setattr(SketchNull, "_simulate", counting)
    x = _rows(world32, 400, 21)
    first, second = _monitor(ref32, window=200, seed=4), _monitor(ref32, window=200, seed=4)
    other_seed = _monitor(ref32, window=200, seed=5)
    assert first.null is second.null and first.basis is second.basis
    assert other_seed.null is not first.null
    a = [w.result.metrics for w in first.update(x).check()]
    b = [w.result.metrics for w in second.update(x).check()]
    assert len(simulated) == 1  # the second stream used the first one's null
    assert len(a) == len(b) == 2
    for left, right in zip(a, b, strict=True):  # the sum-based statistics are deterministic
        assert left["mmd"] == right["mmd"] and left["frechet"] == right["frechet"]
    # A monitor restored from a checkpoint joins the same null.
    assert type(first).from_state(ref32, first.state_bytes()).null is first.null
    key = next(k for k, v in monitor_module._SHARED_NULLS.items() if v is first.null)
    del first, second
    gc.collect()
    assert key not in monitor_module._SHARED_NULLS


def test_shared_null_keeps_no_reference_alive(world32, ref32, tmp_path):
    """A monitor built on another Reference object of the same id joins the shared null, and
    the first object goes once its own monitor is gone (the null keeps derived arrays only)."""
    import gc
    import weakref

    ref32.save(tmp_path / "ref")
    first_ref = Reference.load(tmp_path / "ref")
    second_ref = Reference.load(tmp_path / "ref")
    first, second = (
        _monitor(first_ref, window=200, seed=6),
        _monitor(second_ref, window=200, seed=6),
    )
    assert first.null is second.null
    gone = weakref.ref(first_ref)
    del first, first_ref
    gc.collect()
    assert gone() is None
    windows = second.update(_rows(world32, 400, 22)).check()
    assert len(windows) == 2 and all(np.isfinite(w.result.p_value) for w in windows)


def test_null_sizes_simulate_independently(ref32, basis32, monkeypatch):
    """One stream simulating the null of a new window size does not hold up another stream
    that needs a different size (one lock per size)."""
    import threading

    from embdrift.stream.calibration import SketchNull

    null = SketchNull(basis32, ref32, n_calibration=19)
    small, large = 40, 200
    assert null.split_size(small) != null.split_size(large)
    started, other_done = threading.Event(), threading.Event()
    waited: list[bool] = []
    real_simulate = SketchNull._simulate

    def simulate(self, m_b):
        if m_b == self.split_size(large):
            started.set()
            waited.append(other_done.wait(timeout=10))
        out = real_simulate(self, m_b)
        if m_b == self.split_size(small):
            other_done.set()
        return out

    monkeypatch.setattr(SketchNull, "_simulate", simulate)
    slow = threading.Thread(target=null.raw_null, args=(large,))
    slow.start()
    assert started.wait(timeout=10)
    null.raw_null(small)  # with one lock for all sizes this waits for the slow one
    slow.join()
    assert waited == [True]
    assert null.raw_null(large)[1] == null.split_size(large)


def test_sketch_null_refuses_another_references_rows(ref32, other_ref, basis32):
    """The null must split the held-out rows of the basis's own reference."""
    from embdrift.stream.calibration import SketchNull

    with pytest.raises(IncompatibleSketchError, match=other_ref.reference_id):
        SketchNull(basis32, other_ref, n_calibration=19)
    with pytest.raises(TypeError, match="Reference"):
        SketchNull(basis32, ref32.sample, n_calibration=19)
    assert not basis32.pc1_edges.flags.writeable
