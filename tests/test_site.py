"""site/analysis/generate_all.py: the post's figures, byte-identical on a rerun and to the
committed site/figures that the README shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    committed = REPO / "site" / "figures" / "embedding_drift"
    stale = [name for name, data in outputs[0].items() if (committed / name).read_bytes() != data]
    assert not stale, (
        f"site/figures/embedding_drift/{stale} differ from what the library makes now:"
        " run 'python site/analysis/generate_all.py' and commit the figures"
    )
