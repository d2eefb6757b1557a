"""The report's parts without a browser: texts files, escaping, truncation, deterministic SVG,
and the drift-over-time chart from a real DuckDB store."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embdrift.errors import FileFormatError, IdMismatchError
from embdrift.explain import explain
from embdrift.reference import Reference
from embdrift.report.html import MAX_TEXT_CHARS, match_texts, read_texts, render_report
from embdrift.report.plots import (
    HEXBIN_ABOVE,
    drift_over_time_figure,
    figure_svg,
    pca_scatter_figure,
    save_figure,
)
from embdrift.store import Store
from embdrift.synthetic import make_scenario


def test_jsonl_and_parquet_texts_read_alike(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text(
        '{"id": 1, "text": "caf\\u00e9"}\n\n{"id": "b", "text": "zwei"}\n', encoding="utf-8"
    )
    pq.write_table(pa.table({"id": ["1", "b"], "text": ["café", "zwei"]}), tmp_path / "t.parquet")
    assert read_texts(tmp_path / "t.jsonl") == read_texts(tmp_path / "t.parquet")
    assert read_texts(tmp_path / "t.jsonl") == {"1": "café", "b": "zwei"}


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("bad.jsonl", b'{"id": "a", "text": "caf\xe9"}\n', "line 1 is not valid UTF-8"),
        ("bad.jsonl", b'{"id": "a"}\n', "line 1 must be an object with 'id' and 'text'"),
        ("bad.jsonl", b'{"id": "a", "text": "x"}\nnot json\n', "line 2 is not JSON"),
        ("bad.jsonl", b'{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "repeats the id"),
        ("bad.jsonl", b'{"id": "a", "text": 3}\n', "'text' must be a string"),
        ("bad.csv", b"id,text\n", "unknown file type '.csv'"),
    ],
)
def test_bad_texts_files(tmp_path: Path, name: str, content: bytes, match: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(FileFormatError, match=match):
        read_texts(tmp_path / name)


def test_parquet_texts_with_bad_bytes_or_columns(tmp_path: Path) -> None:
    pq.write_table(
        pa.table({"id": ["a"], "text": pa.array([b"caf\xe9"], type=pa.binary())}),
        tmp_path / "bin.parquet",
    )
    with pytest.raises(FileFormatError, match="row 0: the text is not valid UTF-8"):
        read_texts(tmp_path / "bin.parquet")
    pq.write_table(pa.table({"key": ["a"], "body": ["x"]}), tmp_path / "cols.parquet")
    with pytest.raises(FileFormatError, match=r"lacks the column\(s\) \['id', 'text'\]"):
        read_texts(tmp_path / "cols.parquet")


def test_missing_ids_raise_and_extra_ids_are_counted() -> None:
    with pytest.raises(IdMismatchError, match="no text for 2 of the window's 3 ids"):
        match_texts({"a": "x"}, ["a", "b", "c"])
    matched = match_texts({"a": "x", "b": "y", "zz": "extra"}, ["a", "b"])
    assert dict(matched.by_id) == {"a": "x", "b": "y"}
    assert (matched.n_extra, matched.extra_examples) == (1, ("zz",))


@pytest.fixture(scope="module")
def explained() -> tuple[Reference, np.ndarray, object, object]:
    week0, week4 = make_scenario(
        "new_cluster", n_reference=800, n_current=400, dim=32, new_share=0.08, seed=2
    )
    ref = Reference.fit(week0, seed=0)
    result = ref.compare(week4, n_permutations=49)
    ids = [f"id{i}" for i in range(len(week4))]
    return ref, week4, result, explain(ref, week4, ids=ids)


def test_report_escapes_and_truncates_texts(explained: tuple) -> None:
    ref, week4, result, ex = explained
    assert ex.new_clusters, "the planted cluster should be reported"
    hostile = "<script>alert(1)</script><b onclick='x'>&amp;"
    texts = {f"id{i}": hostile + "é" * (3 * MAX_TEXT_CHARS) for i in range(len(week4))}
    html = render_report(
        result, reference=ref, current=week4, explanation=ex, texts=match_texts(texts, texts)
    )
    assert "<script>" not in html and "<b onclick" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b onclick=&#39;x&#39;&gt;&amp;amp;" in html
    assert f"cut at {MAX_TEXT_CHARS} of {len(texts['id0'])} characters" in html
    assert "é" * (3 * MAX_TEXT_CHARS) not in html
    assert not re.search(r"https?://", html)
    for example in ex.new_clusters[0].examples:
        assert f'<span class="id">{example}</span>' in html


def test_report_renders_identically_twice(explained: tuple) -> None:
    ref, week4, result, ex = explained
    a = render_report(result, reference=ref, current=week4, explanation=ex)
    b = render_report(result, reference=ref, current=week4, explanation=ex)
    assert a == b


def test_svg_is_deterministic_and_clean(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ref_xy, cur_xy = rng.normal(size=(300, 2)), rng.normal(size=(200, 2)) + 0.5
    regions = [("new-1", cur_xy[:12] + 3.0), ("new-2", cur_xy[12:14])]  # hull, and a circle

    def fig() -> object:
        return pca_scatter_figure(
            ref_xy, cur_xy, regions=regions, shift_arrow=True, spread_ellipses=True
        )

    assert figure_svg(fig()) == figure_svg(fig())
    svg = figure_svg(fig())
    assert svg.startswith("<svg") and "<!--" not in svg and "http" not in svg
    first = save_figure(fig(), tmp_path / "a.svg").read_bytes()
    second = save_figure(fig(), tmp_path / "b.svg").read_bytes()
    assert first == second
    assert save_figure(fig(), tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dense_windows_are_drawn_as_density_not_subsampled() -> None:
    rng = np.random.default_rng(1)
    big = rng.normal(size=(HEXBIN_ABOVE + 1, 2))
    figure = pca_scatter_figure(big, big + 1.0)
    ax = figure.axes[0]
    hexbins = [c for c in ax.collections if type(c).__name__ == "PolyCollection"]
    assert len(hexbins) == 2
    assert sum(h.get_array().sum() for h in hexbins) == 2 * (HEXBIN_ABOVE + 1)  # every point
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(f"n={HEXBIN_ABOVE + 1}, density" in label for label in labels)


def test_drift_over_time_from_a_real_store(tmp_path: Path, explained: tuple) -> None:
    ref, week4, result, _ = explained
    store = Store(tmp_path / "s.duckdb")
    start = datetime(2026, 11, 2, tzinfo=UTC)
    for week in range(3):
        store.append_result(
            result,
            source=f"week{week}",
            stream="weekly",
            window_start=start + timedelta(days=7 * week),
            window_end=start + timedelta(days=7 * week + 7),
        )
    series = store.drift_series("weekly", "mmd")
    assert len(series) == 3
    figure = drift_over_time_figure(series, metric="mmd")
    ax = figure.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [result.metrics["mmd"].value] * 3)
    shaded = [p for p in ax.patches if p.get_label() == "drift alert" or p.get_alpha() == 0.15]
    assert len(shaded) == (3 if result.metrics["mmd"].drifted else 0)
    assert "<svg" in figure_svg(figure)
