"""The command line end to end, in a temporary directory, through the installed entry point."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embdrift.synthetic import make_scenario

EMBDRIFT = [sys.executable, "-m", "embdrift"]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EMBDRIFT, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def build_reference(files: dict[str, Path], cwd: Path) -> None:
    proc = run(["reference", "build", str(files["week0"]), "-o", "ref.npz"], cwd)
    assert proc.returncode == 0, proc.stderr


def store_rows(path: Path) -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        row = con.execute("SELECT count(*) FROM results").fetchone()
    assert row is not None
    return int(row[0])


def test_demo_writes_figures_scores_and_a_store_row(tmp_path: Path) -> None:
    proc = run(["demo", "--out", "out"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in ("embedding-drift-pca.svg", "pc1-week0.svg", "pc1-week4.svg"):
        root = ET.parse(tmp_path / "out" / name).getroot()
        assert root.tag.endswith("svg")
        assert len(list(root.iter())) > 50  # a drawn figure, not an empty document
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert scores["drifted"] is True
    assert "mmd" in scores["metrics"]
    assert store_rows(tmp_path / ".embdrift" / "embdrift.duckdb") == 1
    assert "DRIFT" in proc.stdout


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("files")
    ref, cur = make_scenario(
        "mean_shift", n_reference=400, n_current=300, dim=32, strength=4, seed=1
    )
    _, same = make_scenario("none", n_reference=400, n_current=300, dim=32, seed=2)
    np.save(root / "week0.npy", ref)
    np.savez(root / "week4.npz", embeddings=cur, ids=np.arange(len(cur)))
    table = pa.table(
        {
            "id": np.arange(len(cur)),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(cur.ravel()), 32),
        }
    )
    pq.write_table(table, root / "week4.parquet", row_group_size=100)
    pq.write_table(pa.table({"embedding": [[1.0, 2.0], [3.0]]}), root / "ragged.parquet")
    np.save(root / "same.npy", same)
    bad = cur.copy()
    bad[7, 3] = np.nan
    np.save(root / "nan.npy", bad)
    np.save(root / "wrongdim.npy", cur[:, :31])
    (root / "notes.txt").write_text("hello")
    np.save(root / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return {p.stem: p for p in root.iterdir()}


def test_reference_build_then_check_round_trip(files: dict[str, Path], tmp_path: Path) -> None:
    built = run(["reference", "build", str(files["week0"]), "-o", "ref.npz"], tmp_path)
    assert built.returncode == 0, built.stderr
    ref_id = built.stdout.strip()
    for name in ("week4", "same"):
        suffix = ".npz" if name == "week4" else ".npy"
        proc = run(
            [
                "check",
                "--reference",
                "ref.npz",
                str(files[name].with_suffix(suffix)),
                "--json",
                "--permutations",
                "99",
            ],
            tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        payload = json.loads(proc.stdout)
        assert payload["reference_id"] == ref_id
        assert payload["drifted"] is (name == "week4")
        assert set(payload["metrics"]["mmd"]) >= {"value", "p_value", "drifted"}
    parquet = run(
        [
            "check",
            "-r",
            "ref.npz",
            str(files["week4"].with_suffix(".parquet")),
            "--json",
            "--permutations",
            "99",
        ],
        tmp_path,
    )
    npz = run(
        [
            "check",
            "-r",
            "ref.npz",
            str(files["week4"].with_suffix(".npz")),
            "--json",
            "--permutations",
            "99",
        ],
        tmp_path,
    )
    a, b = json.loads(parquet.stdout), json.loads(npz.stdout)
    assert a["metrics"]["mmd"]["value"] == pytest.approx(b["metrics"]["mmd"]["value"], rel=1e-12)
    assert store_rows(tmp_path / ".embdrift" / "embdrift.duckdb") == 4


def test_fail_on_drift_sets_exit_status(files: dict[str, Path], tmp_path: Path) -> None:
    assert (
        run(["reference", "build", str(files["week0"]), "-o", "ref.npz"], tmp_path).returncode == 0
    )
    drift = run(
        [
            "check",
            "-r",
            "ref.npz",
            str(files["week4"].with_suffix(".npz")),
            "--fail-on-drift",
            "--permutations",
            "99",
            "--store",
            "s.duckdb",
        ],
        tmp_path,
    )
    assert drift.returncode == 1
    calm = run(
        [
            "check",
            "-r",
            "ref.npz",
            str(files["same"].with_suffix(".npy")),
            "--fail-on-drift",
            "--permutations",
            "99",
            "--store",
            "s.duckdb",
        ],
        tmp_path,
    )
    assert calm.returncode == 0
    assert store_rows(tmp_path / "s.duckdb") == 2


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("notes", "unknown file type '.txt'"),
        ("ragged", "ragged rows"),
        ("nan", "NaN or inf"),
        ("wrongdim", "must have 32 dimensions"),
        ("objects", "Object arrays cannot be loaded"),
    ],
)
def test_bad_files_exit_2_with_the_message(
    files: dict[str, Path], tmp_path: Path, name: str, message: str
) -> None:
    assert (
        run(["reference", "build", str(files["week0"]), "-o", "ref.npz"], tmp_path).returncode == 0
    )
    target = next(p for stem, p in files.items() if stem == name)
    proc = run(["check", "-r", "ref.npz", str(target), "--store", "s.duckdb"], tmp_path)
    assert proc.returncode == 2
    assert message in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "s.duckdb").exists()  # nothing recorded for a rejected input


def test_missing_reference_exits_2(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((30, 4)))
    proc = run(["check", "-r", "nope.npz", "x.npy"], tmp_path)
    assert proc.returncode == 2
    assert "reference build" in proc.stderr


def test_too_few_permutations_exit_2_naming_the_count(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """A permutation count with which the verdict could never fire is refused before anything
    is recorded, and the message names the count that can."""
    assert (
        run(["reference", "build", str(files["week0"]), "-o", "ref.npz"], tmp_path).returncode == 0
    )
    args = ["check", "-r", "ref.npz", str(files["same"].with_suffix(".npy"))]
    proc = run([*args, "--permutations", "19", "--store", "s.duckdb"], tmp_path)
    assert proc.returncode == 2
    assert "n_permutations >= 49" in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "s.duckdb").exists()


def test_default_permutations_follow_alpha(files: dict[str, Path], tmp_path: Path) -> None:
    """Without --permutations the check takes compare's default, which rises with a small
    --alpha (999 at 0.01), so the default command works at any level."""
    assert (
        run(["reference", "build", str(files["week0"]), "-o", "ref.npz"], tmp_path).returncode == 0
    )
    args = ["check", "-r", "ref.npz", str(files["same"].with_suffix(".npy")), "--json"]
    for alpha, expected in (("0.05", 500), ("0.01", 999)):
        proc = run([*args, "--alpha", alpha], tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["n_permutations"] == expected
    proc = run([*args, "--calibration", "stored", "--permutations", "99"], tmp_path)
    assert proc.returncode == 2
    assert "drop --permutations" in " ".join(proc.stderr.split())


def test_locked_store_names_the_holder(files: dict[str, Path], tmp_path: Path) -> None:
    assert (
        run(["reference", "build", str(files["week0"]), "-o", "ref.npz"], tmp_path).returncode == 0
    )
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, time; c = duckdb.connect('held.duckdb');"
            " print('ready', flush=True); time.sleep(60)",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        proc = run(
            [
                "check",
                "-r",
                "ref.npz",
                str(files["same"].with_suffix(".npy")),
                "--permutations",
                "99",
                "--store",
                "held.duckdb",
            ],
            tmp_path,
        )
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert proc.returncode == 2
    text = " ".join(proc.stderr.split())
    assert "is locked by process" in text and str(holder.pid) in text


def test_help_lists_the_commands(tmp_path: Path) -> None:
    proc = run(["--help"], tmp_path)
    assert proc.returncode == 0
    for command in ("demo", "check", "reference"):
        assert command in proc.stdout


def test_stored_null_from_reference_build_to_check(files: dict[str, Path], tmp_path: Path) -> None:
    proc = run(
        ["reference", "build", str(files["week0"]), "-o", "ref.npz", "--window-size", "300"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    checked = {}
    for name in ("week4", "same"):
        proc = run(
            ["check", str(files[name]), "-r", "ref.npz", "--calibration", "stored", "--json"],
            tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        checked[name] = json.loads(proc.stdout)
    assert checked["week4"]["method"] == "stored_null"
    assert checked["week4"]["drifted"] is True
    assert checked["same"]["drifted"] is False
    # A window far from every stored size is refused with the fix, and nothing is stored.
    proc = run(["reference", "build", str(files["week0"]), "-o", "small.npz"], tmp_path)
    proc = run(
        ["check", str(files["week4"]), "-r", "small.npz", "--calibration", "stored"], tmp_path
    )
    assert proc.returncode == 2
    assert "--window-size" in proc.stderr or "window_sizes" in proc.stderr


def test_help_names_every_option_in_full_in_a_narrow_terminal():
    """--help of every command, 60 columns wide, spells out each option and flag (a help
    table that cuts 'checkpoint-every' to 'checkpoint-ev…' hides the option)."""
    import click
    import typer
    from typer.testing import CliRunner

    from embdrift.cli import app

    def commands(group: click.Group, path: list[str]):
        for name, cmd in group.commands.items():
            yield [*path, name], cmd
            if isinstance(cmd, click.Group):
                yield from commands(cmd, [*path, name])

    runner = CliRunner()
    seen = 0
    for path, cmd in commands(typer.main.get_command(app), []):
        out = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "60"}, terminal_width=60)
        assert out.exit_code == 0, out.output
        for param in cmd.params:
            for flag in (*param.opts, *param.secondary_opts):
                if flag.startswith("-"):
                    assert flag in out.output, f"'{' '.join(path)} --help' cuts {flag}"
                    seen += 1
    assert seen > 50
