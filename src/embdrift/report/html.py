"""The self-contained HTML drift report: verdict, score table, figures, and what drifted.

One file, no network: the figures are inline SVG, the style is inline, and a Content Security
Policy (``default-src 'none'``) forbids the page from fetching anything or running scripts.
Every string that comes from the data (ids, texts, file names) goes through Jinja2's
autoescaping; only the SVG that matplotlib writes from numbers is inserted verbatim.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from jinja2 import DictLoader, Environment, select_autoescape
from markupsafe import Markup

from embdrift.errors import FileFormatError, IdMismatchError
from embdrift.explain import Explanation, explain
from embdrift.io import EmbeddingFile
from embdrift.reference import Reference
from embdrift.report.plots import (
    drift_over_time_figure,
    figure_svg,
    pc1_histogram_figures,
    pca_scatter_figure,
)
from embdrift.results import DriftResult
from embdrift.store import Store

__all__ = [
    "MAX_TEXT_CHARS",
    "Texts",
    "check_report_inputs",
    "match_texts",
    "read_texts",
    "render_report",
    "window_ids",
    "with_explanation",
    "write_check_report",
    "write_report",
]

#: Texts longer than this are cut for display (the report says so and gives the full length).
MAX_TEXT_CHARS = 600


@dataclass(frozen=True, slots=True)
class Texts:
    """Texts by id for the rows of one window, and how many texts of the file were not used."""

    by_id: Mapping[str, str]
    n_extra: int = 0
    extra_examples: tuple[str, ...] = ()


def read_texts(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read id → text from a JSONL file (one ``{"id": ..., "text": ...}`` object per line) or
    a Parquet file (columns ``id`` and ``text``).

    Raises
    ------
    FileFormatError
        Unknown suffix, a line that is not a JSON object with ``id`` and ``text``, bytes that
        are not UTF-8, a missing column, or a repeated id.
    """
    source = Path(path)
    suffix = source.suffix.lower()
    if not source.is_file():
        raise FileFormatError(f"Cannot read texts from {str(source)!r}: no such file.")
    if suffix in {".jsonl", ".ndjson"}:
        pairs = _read_jsonl(source)
    elif suffix == ".parquet":
        pairs = _read_parquet_texts(source)
    else:
        raise FileFormatError(
            f"Cannot read texts from {str(source)!r}: unknown file type {suffix or '(none)'!r}."
            ' Pass a .jsonl file of {"id": ..., "text": ...} objects or a .parquet file with'
            " 'id' and 'text' columns."
        )
    texts: dict[str, str] = {}
    for where, key, text in pairs:
        if key in texts:
            raise FileFormatError(
                f"{str(source)!r} repeats the id {key!r} ({where}). Each id needs one text."
            )
        texts[key] = text
    return texts


def _read_jsonl(source: Path) -> list[tuple[str, str, str]]:
    out = []
    with source.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise FileFormatError(
                    f"{str(source)!r} line {number} is not valid UTF-8 (byte {exc.start}:"
                    f" {raw[exc.start : exc.start + 1]!r}). Re-encode the file as UTF-8."
                ) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FileFormatError(
                    f"{str(source)!r} line {number} is not JSON ({exc.msg})."
                    ' Each line must be an object like {"id": "q1", "text": "..."}.'
                ) from None
            if not isinstance(obj, dict) or "id" not in obj or "text" not in obj:
                raise FileFormatError(
                    f"{str(source)!r} line {number} must be an object with 'id' and 'text';"
                    f" got {type(obj).__name__} with keys"
                    f" {sorted(obj) if isinstance(obj, dict) else '-'}."
                )
            if not isinstance(obj["text"], str):
                raise FileFormatError(
                    f"{str(source)!r} line {number}: 'text' must be a string; got"
                    f" {type(obj['text']).__name__}."
                )
            out.append((f"line {number}", str(obj["id"]), obj["text"]))
    return out


def _read_parquet_texts(source: Path) -> list[tuple[str, str, str]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(source)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise FileFormatError(f"Cannot read {str(source)!r} as Parquet: {exc}") from None
    missing = [c for c in ("id", "text") if c not in table.column_names]
    if missing:
        raise FileFormatError(
            f"{str(source)!r} lacks the column(s) {missing}; a texts file needs 'id' and"
            f" 'text'. Its columns: {table.column_names}."
        )
    ids = table.column("id").to_pylist()
    raw = table.column("text").to_pylist()
    out = []
    for row, (key, text) in enumerate(zip(ids, raw, strict=True)):
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise FileFormatError(
                    f"{str(source)!r} row {row}: the text is not valid UTF-8 (byte"
                    f" {exc.start}). Re-encode the texts as UTF-8."
                ) from None
        if not isinstance(text, str):
            raise FileFormatError(
                f"{str(source)!r} row {row}: 'text' must be a string; got {type(text).__name__}."
            )
        out.append((f"row {row}", str(key), text))
    return out


def match_texts(texts: Mapping[str, str], ids: Sequence[str]) -> Texts:
    """Check that ``texts`` has a text for every id of the window.

    Raises
    ------
    IdMismatchError
        When some ids of the window have no text. Texts whose ids are not in the window are
        not an error; they are counted (``n_extra``) and the report says so.
    """
    wanted = [str(i) for i in ids]
    missing = [i for i in wanted if i not in texts]
    if missing:
        raise IdMismatchError(
            f"The texts file has no text for {len(missing)} of the window's {len(wanted)} ids"
            f" (first: {', '.join(repr(m) for m in missing[:5])}). Pass the texts of the same"
            " window, keyed by the same ids as the embeddings."
        )
    known = set(wanted)
    extra = [k for k in texts if k not in known]
    return Texts(
        by_id={i: texts[i] for i in wanted},
        n_extra=len(extra),
        extra_examples=tuple(extra[:5]),
    )


def _display(text: str) -> dict[str, Any]:
    if len(text) <= MAX_TEXT_CHARS:
        return {"text": text, "truncated": False, "length": len(text)}
    return {"text": text[:MAX_TEXT_CHARS], "truncated": True, "length": len(text)}


def _fmt(value: float | None, spec: str = ".4g") -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return format(value, spec)


def render_report(
    result: DriftResult,
    *,
    reference: Reference,
    current: npt.ArrayLike,
    explanation: Explanation | None = None,
    texts: Texts | None = None,
    series: Sequence[tuple[datetime, float, float | None, bool]] = (),
    series_metric: str = "mmd",
    title: str = "embdrift report",
    source: str = "",
) -> str:
    """The report as one HTML string.

    Parameters
    ----------
    result : DriftResult
        The scores and the verdict (shown first).
    reference : Reference
        The frozen reference; its test rows and PCA draw the figures.
    current : array-like (m, d)
        The current window as compared (all rows are drawn; above ``HEXBIN_ABOVE`` rows per
        side the scatter shows density instead of points).
    explanation : Explanation, optional
        Adds the new / vanished / moved regions, directions and witness points; new regions
        are outlined on the scatter.
    texts : Texts, optional
        Example texts for current ids (from :func:`match_texts`).
    series : sequence of (time, value, threshold, drifted)
        ``Store.drift_series`` of ``series_metric``; drawn when not empty.
    """
    pca = reference.projection
    ref_xy = pca.standardize(reference.sample)
    cur_xy = pca.standardize(np.asarray(current))
    regions = []
    if explanation is not None:
        for region in explanation.new_clusters:
            members = np.asarray(region.members, dtype=np.int64)
            regions.append((f"{region.label} ({100 * region.share:.1f}%)", cur_xy[members, :2]))
    figures = []
    scatter = pca_scatter_figure(
        ref_xy[:, :2],
        cur_xy[:, :2],
        labels=("reference", "current"),
        title="Reference vs current on the frozen reference PCA",
        regions=regions,
        shift_arrow=True,
        spread_ellipses=True,
    )
    figures.append(("pca-scatter", "Frozen PCA: reference vs current", scatter))
    hist_ref, hist_cur = pc1_histogram_figures(ref_xy[:, 0], cur_xy[:, 0])
    figures.append(("pc1-reference", "PC1, reference (same bins as current)", hist_ref))
    figures.append(("pc1-current", "PC1, current (same bins as reference)", hist_cur))
    if series:
        figures.append(
            (
                "drift-over-time",
                f"{series_metric} over time (store)",
                drift_over_time_figure(series, metric=series_metric),
            )
        )
    rendered = [
        {"id": key, "caption": caption, "svg": Markup(figure_svg(fig))}
        for key, caption, fig in figures
    ]
    text_of = texts.by_id if texts is not None else {}

    def example(ident: str) -> dict[str, Any]:
        shown = _display(text_of[ident]) if ident in text_of else None
        return {"id": ident, "text": shown}

    context: dict[str, Any] = {
        "title": title,
        "source": source,
        "result": result,
        "metrics": [
            {
                "name": name,
                "value": _fmt(m.value),
                "p_value": _fmt(m.p_value, ".4f"),
                "threshold": _fmt(m.threshold),
                "effect_size": _fmt(m.effect_size, ".3g"),
                "drifted": m.drifted,
            }
            for name, m in result.metrics.items()
        ],
        "figures": rendered,
        "explanation": explanation,
        "texts": texts,
        "example": example,
        "fmt": _fmt,
        "max_chars": MAX_TEXT_CHARS,
    }
    if explanation is not None:
        context["top_directions"] = sorted(
            explanation.directions, key=lambda d: -(d.mean_shift_share + d.spread_share)
        )[:5]
    return _ENV.get_template("report.html").render(**context)


def write_report(path: str | os.PathLike[str], html: str) -> Path:
    """Write ``html`` to ``path`` atomically (temporary file, then rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(html)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# ---------------------------------------------------------------------- `embdrift check --report`
def window_ids(data: EmbeddingFile) -> list[str]:
    """The ids of a window read by ``read_embeddings`` as strings (row numbers without ids)."""
    if data.ids is None:
        return [str(i) for i in range(data.embeddings.shape[0])]
    return [str(v) for v in np.asarray(data.ids).tolist()]


def check_report_inputs(data: EmbeddingFile, texts: Mapping[str, str] | None) -> Texts | None:
    """Validate the texts against the window before any work is done (fail fast)."""
    return None if texts is None else match_texts(texts, window_ids(data))


def with_explanation(
    result: DriftResult, reference: Reference, data: EmbeddingFile, *, seed: int
) -> DriftResult:
    """``result`` carrying the explanation of ``data`` (see :func:`embdrift.explain.explain`)."""
    explanation = explain(reference, data.embeddings, ids=window_ids(data), seed=seed)
    return dataclasses.replace(result, explanation=explanation)


def write_check_report(
    path: str | os.PathLike[str],
    result: DriftResult,
    reference: Reference,
    data: EmbeddingFile,
    texts: Texts | None,
    store: str | os.PathLike[str],
    source: str,
) -> Path:
    """Render and write the report of one ``embdrift check`` run; the drift-over-time chart
    shows the store's batch history of ``mmd`` (this run included)."""
    html = render_report(
        result,
        reference=reference,
        current=data.embeddings,
        explanation=result.explanation,
        texts=texts,
        series=Store(store).drift_series("batch", "mmd"),
        series_metric="mmd",
        title=f"embdrift report: {Path(source).name}",
        source=source,
    )
    return write_report(path, html)


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1000px; color: #222;
       padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
.verdict { padding: 1rem 1.25rem; border-radius: 6px; font-size: 1.2rem; }
.verdict.drift { background: #fde8e8; border: 2px solid #d62728; }
.verdict.nodrift { background: #e6f4ea; border: 2px solid #2ca02c; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.yes { color: #d62728; font-weight: bold; }
figure { margin: 1rem 0; } figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 0.85rem; color: #555; }
.cluster { border: 1px solid #ddd; border-radius: 6px; padding: 0.5rem 1rem; margin: 0.75rem 0; }
.examples li { margin: 0.3rem 0; } .id { font-family: monospace; font-weight: bold; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; }
.note { color: #555; font-size: 0.85rem; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<section id="verdict" class="verdict {{ 'drift' if result.drifted else 'nodrift' }}">
<strong>{{ 'DRIFT' if result.drifted else 'No drift' }}</strong>:
combined p = {{ fmt(result.p_value, '.4f') }} at alpha = {{ result.alpha }}
({{ result.method }}, {{ result.n_permutations }} permutations;
{{ result.n_reference }} reference rows vs {{ result.n_current }} current rows;
reference {{ result.reference_id }}{% if source %}; current window {{ source }}{% endif %}).
</section>

<h2>Scores</h2>
<table id="scores">
<thead><tr><th>metric</th><th>value</th><th>p-value</th><th>threshold</th>
<th>effect size</th><th>drift</th></tr></thead>
<tbody>
{% for m in metrics %}<tr class="metric" data-metric="{{ m.name }}"><td>{{ m.name }}</td>
<td class="value">{{ m.value }}</td><td class="p-value">{{ m.p_value }}</td>
<td>{{ m.threshold }}</td><td>{{ m.effect_size }}</td>
<td class="{{ 'yes' if m.drifted else 'no' }}">{{ 'yes' if m.drifted else 'no' }}</td></tr>
{% endfor %}</tbody>
</table>

<h2>Figures</h2>
{% for f in figures %}<figure id="fig-{{ f.id }}" class="figure">{{ f.svg }}
<figcaption>{{ f.caption }}</figcaption></figure>
{% endfor %}

{% if explanation %}
<h2>What drifted</h2>
<p class="note">Examined {{ explanation.n_current_used }} of {{ explanation.n_current }}
current rows against {{ explanation.n_reference }} reference test rows.
{% if texts and texts.n_extra %}{{ texts.n_extra }} texts in the texts file have ids that are
not in this window and were ignored (e.g. {{ texts.extra_examples | join(', ') }}).{% endif %}
</p>
<section id="new-clusters">
<h3>New clusters ({{ explanation.new_clusters | length }})</h3>
{% for r in explanation.new_clusters %}
<div class="cluster" data-label="{{ r.label }}">
<strong>{{ r.label }}</strong>: {{ fmt(100 * r.share, '.1f') }}% of the current window
({{ r.size }} rows, {{ r.core_size }} flagged directly);
centre on PC1/PC2 ({{ fmt(r.centroid[0], '.2f') }}, {{ fmt(r.centroid[1], '.2f') }}).
<ul class="examples">
{% for ident in r.examples %}{% set ex = example(ident) %}
<li><span class="id">{{ ex.id }}</span>
{% if ex.text %}<span class="text">{{ ex.text.text }}</span>{% if ex.text.truncated %}
<span class="note">… [cut at {{ max_chars }} of {{ ex.text.length }} characters]</span>
{% endif %}{% endif %}</li>
{% endfor %}</ul></div>
{% else %}<p>No new cluster: no group of at least
{{ explanation.params.min_cluster_size }} current rows is over-represented or far from the
reference.</p>{% endfor %}
</section>
<section id="vanished-clusters">
<h3>Vanished clusters ({{ explanation.vanished_clusters | length }})</h3>
{% for r in explanation.vanished_clusters %}
<div class="cluster" data-label="{{ r.label }}">
<strong>{{ r.label }}</strong>: {{ fmt(100 * r.share, '.1f') }}% of the reference test rows
({{ r.size }} rows) have no counterpart in the current window; examples (reference test
rows): {% for ident in r.examples %}<span class="id">{{ ident }}</span> {% endfor %}</div>
{% else %}<p>No vanished cluster.</p>{% endfor %}
</section>
<section id="reference-clusters">
<h3>Reference clusters: moved and re-weighted</h3>
<table>
<thead><tr><th>cluster</th><th>reference share</th><th>current share</th><th>Cohen's h</th>
<th>share p</th><th>centre shift</th><th>shift p</th><th>moved</th><th>re-weighted</th>
<th>current examples</th></tr></thead>
<tbody>
{% for c in explanation.reference_clusters %}<tr data-label="{{ c.label }}"><td>{{ c.label }}</td>
<td>{{ fmt(100 * c.reference_share, '.1f') }}%</td>
<td>{{ fmt(100 * c.current_share, '.1f') }}%</td><td>{{ fmt(c.share_effect, '.3f') }}</td>
<td>{{ fmt(c.share_p_value, '.3g') }}</td><td>{{ fmt(c.shift, '.3f') }}</td>
<td>{{ fmt(c.shift_p_value, '.3g') }}</td>
<td class="{{ 'yes' if c.moved else 'no' }}">{{ 'yes' if c.moved else 'no' }}</td>
<td class="{{ 'yes' if c.reweighted else 'no' }}">{{ 'yes' if c.reweighted else 'no' }}</td>
<td>{% for ident in c.examples[:3] %}<span class="id">{{ ident }}</span> {% endfor %}</td></tr>
{% endfor %}</tbody></table>
</section>
<section id="directions">
<h3>Directions</h3>
<p class="note">Outside the frozen top-{{ explanation.directions | length }} PCs:
{{ fmt(100 * explanation.mean_shift_outside_share, '.1f') }}% of the mean shift,
{{ fmt(100 * explanation.spread_outside_share, '.1f') }}% of the spread change.</p>
<table>
<thead><tr><th>PC</th><th>mean shift (ref. std)</th><th>share of mean shift</th>
<th>spread ratio</th><th>share of spread change</th></tr></thead>
<tbody>
{% for d in top_directions %}<tr><td>PC{{ d.component }}</td><td>{{ fmt(d.mean_shift, '.3f') }}</td>
<td>{{ fmt(100 * d.mean_shift_share, '.1f') }}%</td><td>{{ fmt(d.spread_ratio, '.3f') }}</td>
<td>{{ fmt(100 * d.spread_share, '.1f') }}%</td></tr>
{% endfor %}</tbody></table>
</section>
<section id="witness">
<h3>MMD witness</h3>
<p>Most over-represented in the current window:</p>
<ul class="examples">
{% for w in explanation.witness_over %}{% set ex = example(w.id) %}
<li><span class="id">{{ w.id }}</span>
({{ fmt(w.value, '.3g') }}) {% if ex.text %}<span class="text">{{ ex.text.text }}</span>
{% if ex.text.truncated %}<span class="note">… [cut at {{ max_chars }} of
{{ ex.text.length }} characters]</span>{% endif %}{% endif %}</li>
{% endfor %}</ul>
<p>Most under-represented (reference test rows):
{% for w in explanation.witness_under %}<span class="id">{{ w.id }}</span>
({{ fmt(w.value, '.3g') }}) {% endfor %}</p>
</section>
{% endif %}
<p class="note">Written by embdrift. Self-contained: no scripts, no network requests.</p>
</body>
</html>
"""

_ENV = Environment(
    loader=DictLoader({"report.html": _TEMPLATE}),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=False,
    lstrip_blocks=False,
)
