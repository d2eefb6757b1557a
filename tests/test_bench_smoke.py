"""Smoke run of the benchmark harness (benchmarks/run.py --quick, embdrift only).

The benchmark itself (peers, full seed counts, cost at 100k rows) runs under ``make bench``;
this only checks that the harness runs end to end in the main env and writes both tables with
the expected rows. Speed and memory are never asserted here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from support import REPO, require, shared_data_dir

SCENARIO_COLUMNS = {
    "synthetic": ["none", "mean_shift", "spread", "new_cluster", "mix_shift"],
    "real": ["none", "section_mix", "new_section"],
}
# One BLAS thread: oversubscribed multi-threaded BLAS stalls on a busy CI machine.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
EMBDRIFT_ROWS = [
    "embdrift · verdict",
    "embdrift · mmd",
    "embdrift · energy",
    "embdrift · wasserstein_pc1",
    "embdrift · sliced_wasserstein",
    "embdrift · kl_pc1",
    "embdrift · js_pc1",
    "embdrift · mean_shift",
    "embdrift · spread_ratio",
    "embdrift · reconstruction_error",
    "embdrift · local_reconstruction_error",
    "embdrift · novelty",
    "embdrift · residual_mean_shift",
]


def _table(text: str, heading: str) -> list[list[str]]:
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_quick_benchmark_writes_both_tables(tmp_path: Path) -> None:
    require(
        (shared_data_dir() / "debian_packages_minilm.npz").exists(),
        "real-text embeddings (../shared/data) are needed for the real-text scenarios",
    )
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "run.py"),
            "--quick",
            "--methods",
            "embdrift",
            "--n",
            "60",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard, not a timing: the machine may be shared
        env={**os.environ, **ONE_THREAD},
    )
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    for key in (
        "Machine:",
        "BLAS:",
        "Versions:",
        "Detection part: `",
        "Cost part: `",
        "at commit",
        "QUICK",
    ):
        assert key in text

    detection = _table(text, "Detection")
    header, rows = detection[0], detection[2:]
    for dataset, names in SCENARIO_COLUMNS.items():
        for name in names:
            assert any(f"{dataset} `{name}`" in cell for cell in header), (dataset, name)
    assert [row[0] for row in rows] == EMBDRIFT_ROWS
    rate = re.compile(r"^(\d\.\d{3})( \((\d\.\d{3}|—)\))?$")
    for row in rows:
        assert len(row) == len(header)
        assert row[1] == "synt 10/5, real 10/5"
        for cell in row[2:]:
            match = rate.match(cell)
            assert match, cell
            assert 0.0 <= float(match.group(1)) <= 1.0

    cost = _table(text, "Cost of one check")
    assert cost[0] == ["method", "n = 1,000"]
    ((name, cell),) = [row for row in cost[2:]]
    assert name == "embdrift"
    assert re.match(r"^\d+\.\d\d s, [\d,]+ MB \(compare \d+\.\d\d s\); CPU \d+\.\d\d s$", cell), (
        cell
    )


def test_quick_benchmark_rejects_unknown_method(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "run.py"),
            "--quick",
            "--methods",
            "nope",
            "--out",
            str(tmp_path / "R.md"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown method" in proc.stderr
    assert not (tmp_path / "R.md").exists()


def test_quick_calibration_benchmark_writes_both_tables(tmp_path: Path) -> None:
    require(
        (shared_data_dir() / "debian_packages_minilm.npz").exists(),
        "real-text embeddings (../shared/data) are needed for the real-text runs",
    )
    out = tmp_path / "RESULTS-calibration.md"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "calibration.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **ONE_THREAD},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    per_ref = _table(text, "Per-reference false-alarm rate")
    assert [(row[0].split(" ")[0], row[1]) for row in per_ref[2:]] == [
        ("synthetic", "batch"),
        ("synthetic", "stored"),
        ("synthetic", "stream"),
        ("real", "batch"),
        ("real", "stored"),
        ("real", "stream"),
    ]
    for row in per_ref[2:]:
        assert 0.0 <= float(row[3]) <= 1.0
    sizes = _table(text, "Larger windows")
    assert [(row[0], row[2]) for row in sizes[2:]] == [
        ("synthetic", "permutation"),
        ("synthetic", "stored"),
        ("real", "permutation"),
        ("real", "group_permutation"),
        ("real", "stored"),
    ]
