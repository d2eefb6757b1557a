"""The null stored at fit (``Reference.fit(..., window_sizes=)``, ``compare(...,
calibration="stored")``): false-alarm rates over many fresh references, agreement with the
permutation test, power, and the saved file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embdrift import METRICS, Reference
from embdrift.errors import InvalidParameterError, ReferenceFormatError
from embdrift.reference import KERNEL_METRICS
from embdrift.stats.metrics import energy_distance, mmd2_unbiased
from embdrift.stats.permutation import permutation_masks
from embdrift.stats.twosample import EnergyStatistic, KernelMMD
from embdrift.synthetic import World

ALPHA = 0.05
RUNS = 300
LOW, HIGH = 0.027, 0.080  # 99% binomial interval around 0.05 at 300 runs
WORLD = World.make(dim=16, seed=5)
WEIGHTS = np.r_[np.ones(8), 0.0] / 8


def _window(n: int, rng: np.random.Generator, shift: float = 0.0) -> np.ndarray:
    x = WORLD.sample(n, weights=WEIGHTS, seed=rng)[0]
    if shift:
        x = x + shift * WORLD.centers[0] / np.linalg.norm(WORLD.centers[0])
    return x


@pytest.mark.slow
@pytest.mark.parametrize("window", [150, 300])
def test_stored_null_false_alarm_rate_over_fresh_references(window: int) -> None:
    # 600 reference rows hold out 300: a window of 150 is simulated at its own size, one of
    # 300 at 150 and rescaled (the splits run out).
    hits = {name: 0 for name in (*METRICS, "combined")}
    for seed in range(RUNS):
        rng = np.random.default_rng([seed, window])
        ref = Reference.fit(
            _window(1000, rng), seed=seed, window_sizes=(window,), n_calibration=199
        )
        result = ref.compare(_window(window, rng), alpha=ALPHA, seed=seed, calibration="stored")
        hits["combined"] += result.drifted
        for name, metric in result.metrics.items():
            hits[name] += metric.drifted
    rates = {k: v / RUNS for k, v in hits.items()}
    print(f"stored-null false alarms at window {window}:", rates)
    # The verdict must lie in the 99% binomial interval; each of the 12 metrics in the 99.9%
    # one ([0.009, 0.092] at 300 runs), so that 24 per-metric looks do not fail a calibrated
    # null by chance one run in five, while a null that is off (0.15 or 0.01) still fails.
    assert LOW <= rates["combined"] <= HIGH, rates
    outside = {k: v for k, v in rates.items() if not 0.009 <= v <= 0.092}
    assert not outside, f"outside [0.009, 0.092]: {outside}"


def _held_out_permutation_p(ref: Reference, cur: np.ndarray, name: str) -> float:
    """Permutation p-value of ``name`` between the held-out rows alone and ``cur`` (the
    statistic the stored null calibrates; a permutation check also counts the anchors)."""
    pooled = np.vstack([ref.sample, cur]).astype(np.float64)
    masks = permutation_masks(ref.sample.shape[0], cur.shape[0], 999, np.random.default_rng(2))
    if name == "mmd":
        values = KernelMMD(pooled, bandwidth=ref.bandwidth).values(masks)
    else:
        values = EnergyStatistic(pooled).values(masks)
    return float(np.mean(values >= values[0]))


def test_stored_p_values_agree_with_the_permutation_test() -> None:
    rng = np.random.default_rng(1)
    ref = Reference.fit(_window(1200, rng), seed=1, window_sizes=(300,), n_calibration=999)
    gaps = []
    for shift in (0.0, 0.05, 0.1):
        cur = _window(300, rng, shift)
        stored = ref.compare(cur, calibration="stored")
        perm = ref.compare(cur, n_permutations=999, seed=2)
        assert stored.method == "stored_null" and stored.n_permutations == 999
        for name in METRICS:
            p_value = perm.metrics[name].p_value
            if name in KERNEL_METRICS:
                # The stored null calibrates the held-out rows alone (the anchors' offset
                # from a live window is not known at fit), as the independent functions do.
                held_out = mmd2_unbiased(ref.sample, cur, bandwidth=ref.bandwidth)
                if name == "energy":
                    held_out = energy_distance(ref.sample, cur)
                assert stored.metrics[name].value == pytest.approx(held_out, rel=1e-6, abs=1e-9)
                p_value = _held_out_permutation_p(ref, cur, name)
            else:
                assert stored.metrics[name].value == pytest.approx(perm.metrics[name].value)
            gaps.append(abs(stored.metrics[name].p_value - p_value))
    # Two Monte Carlo nulls of 999 draws each: sd of a p-value gap <= sqrt(2 * 0.25 / 999).
    assert max(gaps) < 0.1, gaps


def test_stored_null_power_matches_the_permutation_test() -> None:
    stored_hits = perm_hits = 0
    runs = 30
    for seed in range(runs):
        rng = np.random.default_rng([seed, 17])
        ref = Reference.fit(_window(1000, rng), seed=seed, window_sizes=(250,), n_calibration=199)
        cur = _window(250, rng, shift=0.08)
        stored_hits += ref.compare(cur, calibration="stored").drifted
        perm_hits += ref.compare(cur, n_permutations=199, seed=seed).drifted
    print(f"power: stored {stored_hits / runs:.2f}, permutation {perm_hits / runs:.2f}")
    assert 0.3 <= perm_hits / runs <= 0.95  # the shift is neither trivial nor invisible
    assert abs(stored_hits - perm_hits) / runs <= 0.15


def test_stored_nulls_round_trip_and_are_checked(tmp_path) -> None:
    rng = np.random.default_rng(3)
    ref = Reference.fit(_window(600, rng), seed=0, window_sizes=(100, 200), n_calibration=49)
    assert ref.window_sizes == (100, 200)
    cur = _window(150, rng)
    path = ref.save(tmp_path / "ref.npz")
    loaded = Reference.load(path)
    assert loaded.window_sizes == (100, 200)
    assert loaded.compare(cur, calibration="stored").to_dict() | {"timings": {}} == ref.compare(
        cur, calibration="stored"
    ).to_dict() | {"timings": {}}
    # A tampered null is refused, not silently used.
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["null_100_scores"] = arrays["null_100_scores"] * 0.5
    np.savez(tmp_path / "tampered.npz", **arrays)
    with pytest.raises(ReferenceFormatError, match="checksum"):
        Reference.load(tmp_path / "tampered.npz")
    # So is reordered metadata (the metric names of the columns), and a null of another file.
    arrays["null_100_scores"] = arrays["null_100_scores"] * 2.0
    meta = json.loads(str(arrays["metadata"]))
    meta["nulls"][0]["metrics"] = meta["nulls"][0]["metrics"][::-1]
    np.savez(tmp_path / "reordered.npz", **{**arrays, "metadata": np.array(json.dumps(meta))})
    with pytest.raises(ReferenceFormatError, match="checksum"):
        Reference.load(tmp_path / "reordered.npz")
    other = Reference.fit(_window(600, rng), seed=9, window_sizes=(100, 200), n_calibration=49)
    with np.load(other.save(tmp_path / "other.npz"), allow_pickle=False) as archive:
        foreign = {k: archive[k] for k in archive.files if k.startswith("null_")}
    meta = json.loads(str(arrays["metadata"]))
    meta["null_digest"] = json.loads(str(np.load(tmp_path / "other.npz")["metadata"]))[
        "null_digest"
    ]
    swapped = {**arrays, **foreign, "metadata": np.array(json.dumps(meta))}
    np.savez(tmp_path / "swapped.npz", **swapped)
    with pytest.raises(ReferenceFormatError, match="checksum"):
        Reference.load(tmp_path / "swapped.npz")


def test_a_null_saved_before_a_metric_existed_loads_and_leaves_that_metric_out(
    tmp_path, monkeypatch
) -> None:
    """A reference whose stored null an older embdrift simulated without
    ``local_reconstruction_error`` (saved with METRICS as it was then) still loads; a stored
    check gives that metric p-value 1 and no say in the verdict, and every other metric the
    p-value of a null that holds it."""
    rng = np.random.default_rng(6)
    x, cur = _window(600, rng), _window(150, rng, shift=0.4)
    older = {k: v for k, v in METRICS.items() if k != "local_reconstruction_error"}
    with monkeypatch.context() as patch:
        patch.setattr("embdrift.reference.METRICS", older)
        path = Reference.fit(x, seed=0, window_sizes=(150,), n_calibration=99).save(
            tmp_path / "old.npz"
        )
    loaded = Reference.load(path)
    current = Reference.fit(x, seed=0, window_sizes=(150,), n_calibration=99)
    assert loaded.reference_id == current.reference_id
    old_result = loaded.compare(cur, calibration="stored")
    new_result = current.compare(cur, calibration="stored")
    left_out = old_result.metrics["local_reconstruction_error"]
    assert left_out.p_value == 1.0 and not left_out.drifted
    assert new_result.metrics["local_reconstruction_error"].p_value < 1.0
    for name in older:
        assert old_result.metrics[name].p_value == new_result.metrics[name].p_value, name
    assert old_result.drifted  # the other decision metrics still see the shift


def test_stored_calibration_errors_name_the_fix() -> None:
    rng = np.random.default_rng(4)
    x = _window(600, rng)
    ref = Reference.fit(x, seed=0, window_sizes=(100,), n_calibration=49)
    with pytest.raises(InvalidParameterError, match=r"window_sizes=\[\.\.\., 400\]"):
        ref.compare(_window(400, rng), calibration="stored")
    with pytest.raises(InvalidParameterError, match="drop 'groups' and 'n_permutations'"):
        ref.compare(_window(100, rng), calibration="stored", n_permutations=99)
    with pytest.raises(InvalidParameterError, match="'calibration'"):
        ref.compare(_window(100, rng), calibration="bootstrap")
    with pytest.raises(InvalidParameterError, match="No stored null"):
        Reference.fit(x, seed=0).compare(_window(100, rng), calibration="stored")
