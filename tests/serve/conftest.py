"""Fixtures of the service tests: a small reference, monitor settings, server processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from embdrift import Reference
from embdrift.serve import MonitorSettings
from embdrift.synthetic import World
from serve_support import CALIBRATION, DIM, WINDOW, Server


@pytest.fixture(scope="session")
def serve_world() -> World:
    return World.make(dim=DIM, n_clusters=5, rank=4, seed=7)


@pytest.fixture(scope="session")
def serve_ref(serve_world: World) -> Reference:
    x, _ = serve_world.sample(1200, weights=np.array([1.0, 1.0, 1.0, 1.0, 0.0]), seed=1)
    return Reference.fit(x, seed=0, n_components=6)


@pytest.fixture(scope="session")
def serve_ref_path(serve_ref: Reference, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return serve_ref.save(tmp_path_factory.mktemp("ref") / "ref.npz")


@pytest.fixture
def settings() -> MonitorSettings:
    """Small and fast; no explanations (tests that need them turn them on)."""
    return MonitorSettings(
        window=WINDOW,
        n_calibration=CALIBRATION,
        reservoir_size=200,
        n_frequencies=128,
        explain=False,
    )


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[type[Server]]:
    started: list[Server] = []

    class _Server(Server):
        def start(self, timeout: float = 60.0) -> Server:
            started.append(self)
            return super().start(timeout)

    yield _Server
    for s in started:
        s.kill()
