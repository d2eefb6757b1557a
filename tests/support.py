"""Helpers shared by the tests: where the real-text data lives, and CI strictness."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def shared_data_dir() -> Path:
    """``$EMBDRIFT_DATA_DIR`` or ``<repo>/../shared/data``."""
    env = os.environ.get("EMBDRIFT_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


def require(condition: bool, reason: str) -> None:
    """Skip locally when an external part is missing; under CI=true, fail instead."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required under CI=true: {reason}")
        pytest.skip(reason)
