"""Reference: fit/compare contract, persistence, frozen state, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embdrift import METRICS, DriftResult, Reference
from embdrift.errors import (
    DimensionMismatchError,
    InsufficientDataError,
    InvalidParameterError,
    ReferenceFormatError,
)
from embdrift.synthetic import make_scenario


@pytest.fixture(scope="module")
def windows() -> tuple[np.ndarray, np.ndarray]:
    return make_scenario("mean_shift", n_reference=300, n_current=200, dim=48, seed=0)


@pytest.fixture(scope="module")
def reference(windows: tuple[np.ndarray, np.ndarray]) -> Reference:
    return Reference.fit(windows[0], seed=0)


def test_public_api_shape(reference: Reference, windows: tuple[np.ndarray, np.ndarray]) -> None:
    res = reference.compare(windows[1], alpha=0.05, n_permutations=99)
    assert isinstance(res.drifted, bool)
    assert set(res.metrics) == set(METRICS)
    for m in res.metrics.values():
        assert 0 < m.p_value <= 1
        assert m.drifted == (m.p_value <= 0.05)
    payload = json.loads(res.to_json())
    assert payload["metrics"]["mmd"]["value"] == res.metrics["mmd"].value
    assert payload["reference_id"] == reference.reference_id
    assert DriftResult.from_dict(payload) == DriftResult.from_dict(res.to_dict())
    assert res.n_reference == reference.sample.shape[0] == 150
    assert res.n_current == 200


def test_same_seed_same_result(
    reference: Reference, windows: tuple[np.ndarray, np.ndarray]
) -> None:
    a = reference.compare(windows[1], n_permutations=99, seed=3).to_dict()
    b = reference.compare(windows[1], n_permutations=99, seed=3).to_dict()
    a.pop("timings")
    b.pop("timings")
    assert a == b


def test_save_load_roundtrip(
    reference: Reference, windows: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    path = reference.save(tmp_path / "ref.npz")
    loaded = Reference.load(path)
    assert loaded.reference_id == reference.reference_id
    a = reference.compare(windows[1], n_permutations=99).to_dict()
    b = loaded.compare(windows[1], n_permutations=99).to_dict()
    a.pop("timings")
    b.pop("timings")
    assert a == b
    # Loading never unpickles: the archive holds only plain arrays.
    with np.load(path, allow_pickle=False) as archive:
        assert all(archive[k].dtype != object for k in archive.files)


def test_load_rejects_corrupt_and_foreign_files(reference: Reference, tmp_path: Path) -> None:
    with pytest.raises(ReferenceFormatError, match="No reference file"):
        Reference.load(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ReferenceFormatError, match="not an embdrift reference"):
        Reference.load(junk)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.zeros(3))
    with pytest.raises(ReferenceFormatError, match="no embdrift metadata"):
        Reference.load(foreign)
    path = reference.save(tmp_path / "ref.npz")
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["sample"] = arrays["sample"] + 1.0  # tampered content, stale id
    tampered = tmp_path / "tampered.npz"
    np.savez(tampered, **arrays)
    with pytest.raises(ReferenceFormatError, match="corrupt"):
        Reference.load(tampered)
    meta = json.loads(str(arrays["metadata"]))
    meta["version"] = 99
    arrays["metadata"] = np.array(json.dumps(meta))
    future = tmp_path / "future.npz"
    np.savez(future, **arrays)
    with pytest.raises(ReferenceFormatError, match="version 99"):
        Reference.load(future)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_frozen_state_does_not_depend_on_current_window(seed: int) -> None:
    x, _ = make_scenario("none", n_reference=120, dim=16, seed=5)
    ref = Reference.fit(x, seed=0)
    before = (ref.reference_id, ref.projection.components_.copy(), ref.bandwidth)
    current = np.random.default_rng(seed).normal(size=(50, 16))
    res = ref.compare(current, n_permutations=19, metrics=["mmd", "wasserstein_pc1"])
    assert res.reference_id == before[0] == ref.reference_id
    np.testing.assert_array_equal(ref.projection.components_, before[1])
    assert ref.bandwidth == before[2]
    # Statistic values do not depend on the order of the current rows.
    shuffled = current[np.random.default_rng(seed + 1).permutation(50)]
    res2 = ref.compare(shuffled, n_permutations=19, metrics=["mmd", "wasserstein_pc1"])
    for name in res.metrics:
        assert res2.metrics[name].value == pytest.approx(
            res.metrics[name].value, rel=1e-9, abs=1e-12
        )


def test_caller_arrays_are_not_modified(windows: tuple[np.ndarray, np.ndarray]) -> None:
    ref_rows, cur_rows = (w.copy() for w in windows)
    ref = Reference.fit(ref_rows, seed=1)
    ref.compare(cur_rows, n_permutations=49)
    np.testing.assert_array_equal(ref_rows, windows[0])
    np.testing.assert_array_equal(cur_rows, windows[1])
    assert not ref.sample.flags.writeable


def test_bad_input(reference: Reference) -> None:
    with pytest.raises(DimensionMismatchError, match="must have 48 dimensions"):
        reference.compare(np.ones((10, 47)))
    with pytest.raises(InsufficientDataError, match="at least 2 rows"):
        reference.compare(np.ones((1, 48)))
    with pytest.raises(InsufficientDataError, match="at least 20 rows"):
        Reference.fit(np.ones((5, 48)))
    with pytest.raises(InvalidParameterError, match="'alpha'"):
        reference.compare(np.ones((10, 48)), alpha=1.5)
    with pytest.raises(InvalidParameterError, match="Unknown metric"):
        reference.compare(np.ones((10, 48)), metrics=["mmd", "nope"])
    with pytest.raises(InvalidParameterError, match="'n_permutations'"):
        reference.compare(np.ones((10, 48)), n_permutations=5)
    with pytest.raises(InvalidParameterError, match="'fit_fraction'"):
        Reference.fit(np.ones((50, 48)), fit_fraction=1.0)
