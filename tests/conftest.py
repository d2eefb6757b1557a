"""Shared fixtures: the real-text embeddings from ../shared/data."""

from __future__ import annotations

import numpy as np
import pytest

from support import require, shared_data_dir


@pytest.fixture(scope="session")
def real_text() -> dict[str, np.ndarray]:
    """The Debian-package MiniLM embeddings: ``embeddings`` float32 (N, 384), ``section``,
    ``package``."""
    path = shared_data_dir() / "debian_packages_minilm.npz"
    require(path.exists(), f"real-text embeddings not found at {path}")
    with np.load(path, allow_pickle=False) as data:
        return {
            "embeddings": data["embeddings"].astype(np.float32),
            "section": data["section"],
            "package": data["package"],
        }
