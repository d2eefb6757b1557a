"""The HTML report as a person sees it: written by `embdrift check --report`, opened in real
headless Chromium over the DevTools protocol (console, exceptions, network, DOM geometry)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from chromium_cdp import chromium_available, visit

from embdrift.explain import explain
from embdrift.reference import Reference
from embdrift.report.html import match_texts, render_report, write_report
from embdrift.synthetic import make_scenario
from support import REPO, require, shared_data_dir

EMBDRIFT = [sys.executable, "-m", "embdrift"]
ARTIFACTS = REPO / "artifacts"
HOSTILE = (
    "<script>document.body.dataset.pwned = 'script'</script>"
    '<img src="x" onerror="document.body.dataset.pwned = \'img\'"> & "quotes" '
)

# Everything the tests read from the page, evaluated by the DevTools protocol (which the page's
# Content Security Policy does not restrict).
EXPRESSIONS = {
    "verdict": "document.querySelector('#verdict').innerText",
    "rows": """[...document.querySelectorAll('#scores tr.metric')].map(r => ({
        name: r.dataset.metric,
        value: r.querySelector('.value').innerText,
        p: r.querySelector('.p-value').innerText}))""",
    "svgs": """[...document.querySelectorAll('figure.figure')].map(f => {
        const s = f.querySelector('svg'); if (!s) return null;
        const r = s.getBoundingClientRect(); return [f.id, r.width, r.height]; })""",
    "cluster_ids": """[...document.querySelectorAll('#new-clusters .cluster .id')]
        .map(e => e.innerText)""",
    "cluster_text": "document.querySelector('#new-clusters').innerText",
    "pwned": "document.body.dataset.pwned || null",
    "active": "document.querySelectorAll('script, img, iframe, object, embed, link').length",
}


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EMBDRIFT, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    week0, week4 = make_scenario(
        "new_cluster", n_reference=1200, n_current=600, dim=64, new_share=0.06, seed=3
    )
    _, same = make_scenario("none", n_reference=10, n_current=600, dim=64, seed=4)
    ids = np.array([f"q{i:04d}" for i in range(600)])
    np.save(root / "week0.npy", week0)
    np.savez(root / "week4.npz", embeddings=week4, ids=ids)
    np.savez(root / "week1.npz", embeddings=same, ids=ids)
    with (root / "texts.jsonl").open("w", encoding="utf-8") as fh:
        for i in ids:
            fh.write(json.dumps({"id": str(i), "text": f"query {i} {HOSTILE}" + "long " * 300}))
            fh.write("\n")
        fh.write(json.dumps({"id": "not-in-window", "text": "extra"}) + "\n")
    proc = run(["reference", "build", "week0.npy", "-o", "ref.npz"], root)
    assert proc.returncode == 0, proc.stderr
    return root


def test_check_report_in_chromium(workdir: Path) -> None:
    require(chromium_available(), "/usr/bin/chromium is not installed")
    first = run(["check", "-r", "ref.npz", "week1.npz", "--permutations", "99"], workdir)
    assert first.returncode == 0, first.stderr
    proc = run(
        [
            "check",
            "-r",
            "ref.npz",
            "week4.npz",
            "--permutations",
            "99",
            "--json",
            "--report",
            "report.html",
            "--texts",
            "texts.jsonl",
        ],
        workdir,
    )
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["drifted"] is True
    new = payload["explanation"]["new_clusters"]
    assert len(new) == 1
    html = (workdir / "report.html").read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html
    assert "default-src 'none'" in html
    assert "<script>" not in html and "&lt;script&gt;" in html

    shot = ARTIFACTS / "report-synthetic.png"
    page = visit((workdir / "report.html").as_uri(), expressions=EXPRESSIONS, screenshot=shot)
    values = page.values
    assert values["verdict"].startswith("DRIFT")
    rows = {r["name"]: r for r in values["rows"]}
    assert set(rows) == set(payload["metrics"])
    for name, row in rows.items():
        assert float(row["value"]) == pytest.approx(payload["metrics"][name]["value"], rel=1e-3)
        assert float(row["p"]) == pytest.approx(payload["metrics"][name]["p_value"], abs=1e-4)
    figure_ids = [s[0] for s in values["svgs"]]
    assert figure_ids == [
        "fig-pca-scatter",
        "fig-pc1-reference",
        "fig-pc1-current",
        "fig-drift-over-time",
    ]
    assert all(s[1] > 100 and s[2] > 100 for s in values["svgs"])
    assert values["cluster_ids"] == new[0]["examples"]
    assert "cut at 600 of" in values["cluster_text"]
    assert "<script>" in values["cluster_text"]  # shown as text ...
    assert values["pwned"] is None  # ... and never run
    assert values["active"] == 0
    assert page.errors == []
    assert page.requests == [(workdir / "report.html").as_uri()]
    assert shot.stat().st_size > 10_000


def test_bad_texts_fail_before_anything_is_stored(workdir: Path, tmp_path: Path) -> None:
    store = tmp_path / "store.duckdb"
    base = ["check", "-r", str(workdir / "ref.npz"), str(workdir / "week4.npz"), "--store"]
    partial = tmp_path / "partial.jsonl"
    partial.write_text(json.dumps({"id": "q0000", "text": "only one"}) + "\n", encoding="utf-8")
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(b'{"id": "q0000", "text": "caf\xe9"}\n')
    cases = [
        ([*base, str(store), "--report", "r.html", "--texts", str(partial)], "no text for 599"),
        ([*base, str(store), "--report", "r.html", "--texts", str(latin1)], "not valid UTF-8"),
        ([*base, str(store), "--texts", str(partial)], "add --report"),
    ]
    for args, message in cases:
        proc = run(args, tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not store.exists()
    assert not (tmp_path / "r.html").exists()


def test_real_text_report_in_chromium(real_text: dict[str, np.ndarray], tmp_path: Path) -> None:
    require(chromium_available(), "/usr/bin/chromium is not installed")
    texts_path = shared_data_dir() / "debian_packages_minilm.texts.jsonl.gz"
    require(texts_path.exists(), f"real texts not found at {texts_path}")
    with gzip.open(texts_path, "rt", encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh]
    x, section, package = real_text["embeddings"], real_text["section"], real_text["package"]
    rng = np.random.default_rng(0)
    mix = ("python", "libs", "devel", "doc", "utils", "net", "games", "science")
    ref_rows = np.concatenate([rng.choice(np.flatnonzero(section == s), 250, False) for s in mix])
    rest = np.setdiff1d(np.arange(len(x)), ref_rows)
    cur_rows = np.concatenate(
        [rng.choice(rest[section[rest] == s], 119, False) for s in mix]
        + [rng.choice(rest[section[rest] == "rust"], 48, False)]
    )
    reference = Reference.fit(x[ref_rows], seed=0)
    result = reference.compare(x[cur_rows], n_permutations=99)
    ids = [str(p) for p in package[cur_rows]]
    ex = explain(reference, x[cur_rows], ids=ids)
    window_texts = match_texts({str(package[i]): texts[i] for i in cur_rows}, ids)
    html = render_report(
        result, reference=reference, current=x[cur_rows], explanation=ex, texts=window_texts
    )
    path = write_report(tmp_path / "real.html", html)
    shot = ARTIFACTS / "report-real-text.png"
    page = visit(path.as_uri(), expressions=EXPRESSIONS, screenshot=shot)
    assert page.values["verdict"].startswith("DRIFT" if result.drifted else "No drift")
    assert len(page.values["rows"]) == len(result.metrics)
    assert len(page.values["svgs"]) == 3 and all(s[1] > 100 for s in page.values["svgs"])
    assert "Rust" in page.values["cluster_text"]
    assert page.errors == [] and page.requests == [path.as_uri()]
