"""Shared fixtures of the streaming tests: one small reference and its basis."""

from __future__ import annotations

import numpy as np
import pytest

from embdrift import Reference
from embdrift.stream import StreamBasis
from embdrift.synthetic import World


@pytest.fixture(scope="session")
def world32() -> World:
    return World.make(dim=32, n_clusters=5, rank=4, seed=3)


@pytest.fixture(scope="session")
def ref32(world32: World) -> Reference:
    weights = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
    x, _ = world32.sample(1200, weights=weights, seed=10)
    return Reference.fit(x, seed=0, n_components=6)


@pytest.fixture(scope="session")
def basis32(ref32: Reference) -> StreamBasis:
    return StreamBasis(ref32, n_frequencies=128, n_projections=8, seed=1)


@pytest.fixture(scope="session")
def other_ref(world32: World) -> Reference:
    weights = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
    x, _ = world32.sample(600, weights=weights, seed=99)
    return Reference.fit(x, seed=0, n_components=6)


@pytest.fixture(scope="session")
def other_basis(other_ref: Reference) -> StreamBasis:
    return StreamBasis(other_ref, n_frequencies=128, n_projections=8)
