"""site/analysis/generate_all.py: the post's figures, byte-identical on a rerun; the committed
scores (site/figures, shown by the README) equal what the library computes now."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def test_generate_all_is_deterministic(tmp_path: Path) -> None:
    outputs = []
    for run in ("a", "b"):
        proc = subprocess.run(
            [
                sys.executable,
                str(REPO / "site" / "analysis" / "generate_all.py"),
                "--task",
                "embedding_drift",
                "--out",
                str(tmp_path / run),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        folder = tmp_path / run / "embedding_drift"
        outputs.append({p.name: p.read_bytes() for p in sorted(folder.iterdir())})
    assert set(outputs[0]) == {
        "embedding-drift-pca.svg",
        "pc1-week0.svg",
        "pc1-week4.svg",
        "scores.json",
    }
    assert outputs[0] == outputs[1]
    # Scores, not bytes: another BLAS kernel or thread count moves the last digits (so the
    # SVGs, and the reference_id, a digest of the reference's bytes: one BLAS thread gives
    # another id than two).
    committed = REPO / "site" / "figures" / "embedding_drift" / "scores.json"
    want, got = json.loads(committed.read_text()), json.loads(outputs[0]["scores.json"])
    want.pop("reference_id")
    got.pop("reference_id")
    assert _same(want, got), (
        "site/figures/embedding_drift/scores.json differs from what the library computes now:"
        " run '.venv/bin/python site/analysis/generate_all.py' and commit site/figures"
    )


def _same(a: Any, b: Any) -> bool:
    """Equal JSON trees, floats within a relative 1e-6."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    return bool(a == b)
