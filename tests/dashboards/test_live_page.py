"""The live page rendered by the real app (FastAPI TestClient): verdicts, charts drawn from the
history, scatter, clusters, escaping, self-containment and the refresh parameter."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from fastapi.testclient import TestClient

from embdrift import Reference
from embdrift.serve import MonitorSettings, ServeConfig, create_app
from embdrift.serve.page import _MAX_NEG_LOG_P, render_page, stream_view

_LINKING = {"src", "href", "xlink:href", "action", "formaction", "poster", "srcset", "data"}


class _Tags(HTMLParser):
    """Every start tag with its attributes (escaped text is not a tag)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, attrs))


HOSTILE = '<script>document.body.dataset.pwned=1</script><img src=x onerror="alert(1)">'


@pytest.fixture(scope="module")
def reference() -> Reference:
    rng = np.random.default_rng(0)
    return Reference.fit(rng.normal(size=(1000, 16)), n_components=4, seed=0)


def _app(reference: Reference, **config):
    settings = MonitorSettings(window=200, n_calibration=199, reservoir_size=200)
    return create_app(ServeConfig(default_reference=reference, monitor=settings, **config))


def _replay(client: TestClient, stream: str, *, clean: int, drifted: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for i in range(clean + drifted):
        shift = 0.8 if i >= clean else 0.0
        x = rng.normal(size=(200, 16)) + shift
        p = 0.5 if i >= clean else 0.8
        ids = [f"{stream}-{i}-{j}" for j in range(200)]
        if i == clean + drifted - 1:
            ids[0] = HOSTILE
        body = {
            "embeddings": x.tolist(),
            "ids": ids,
            "outcomes": {"success_rate": (rng.random(200) < p).astype(float).tolist()},
        }
        r = client.post(f"/v1/streams/{stream}/embeddings", json=body)
        assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def served(reference: Reference):
    app = _app(reference)
    with TestClient(app) as client:
        _replay(client, "steady", clean=2, drifted=0, seed=1)
        _replay(client, "shifted", clean=1, drifted=2, seed=2)
        app.state.registry.drain()  # explanations run off the ingest path
        page = client.get("/")
        snaps = {s.name: s for s in app.state.registry.snapshots()}
        yield client, page, snaps


def _section(html: str, stream: str) -> str:
    match = re.search(rf'<section class="stream" id="stream-{stream}".*?</section>', html, re.S)
    assert match, stream
    return match.group(0)


def test_verdicts_per_stream(served) -> None:
    _, page, snaps = served
    assert page.status_code == 200
    html = page.text
    steady, shifted = _section(html, "steady"), _section(html, "shifted")
    assert 'data-verdict="ok"' in steady and 'data-alert="0"' in steady
    assert 'data-verdict="drifted"' in shifted and 'data-alert="1"' in shifted
    assert snaps["shifted"].latest.window.result.drifted
    assert not snaps["steady"].latest.window.result.drifted
    assert ">no drift<" in steady and ">drifted<" in shifted and ">ALERT<" in shifted


def test_drift_chart_is_drawn_from_the_history(served) -> None:
    _, _, snaps = served
    snap = snaps["shifted"]
    view = stream_view(snap, now=snap.last_ingest or 0.0)
    chart = view.drift_chart
    assert chart is not None
    combined = chart.series[0]
    assert combined.name == "combined"
    names = [s.name for s in chart.series[1:]]
    assert names == list(snap.latest.window.result.metrics)
    ys = [float(p.split(",")[1]) for p in combined.points.split()]
    xs = [float(p.split(",")[0]) for p in combined.points.split()]
    assert len(ys) == len(snap.history) == 3 and xs == sorted(xs)
    for y, window in zip(ys, snap.history, strict=True):
        expected = min(-math.log10(window.window.result.p_value), _MAX_NEG_LOG_P)
        drawn = (chart.y0 - y) / (chart.y0 - chart.y1) * _MAX_NEG_LOG_P
        assert drawn == pytest.approx(expected, abs=0.02)
    # The alpha line and one shaded band per drifted window.
    alpha = snap.latest.window.result.alpha
    ((y_alpha, label),) = chart.hlines
    assert (chart.y0 - y_alpha) / (chart.y0 - chart.y1) * _MAX_NEG_LOG_P == pytest.approx(
        -math.log10(alpha), abs=0.02
    )
    assert len(chart.bands) == sum(w.window.result.drifted for w in snap.history)
    # Outcomes beneath on the same x positions (the same time axis).
    outcome = view.outcome_chart
    assert outcome is not None and (outcome.x0, outcome.x1) == (chart.x0, chart.x1)
    assert [float(p.split(",")[0]) for p in outcome.series[0].points.split()] == xs
    rates = [w.outcome_rates["success_rate"] for w in snap.history]
    assert rates[-1] < rates[0]  # the planted fall (0.8 -> 0.5)


def test_scatter_and_clusters(served) -> None:
    _, page, snaps = served
    snap = snaps["shifted"]
    section = _section(page.text, "shifted")
    scatter = re.search(r'<svg class="chart pca-scatter".*?</svg>', section, re.S).group(0)
    n_circles = scatter.count("<circle")
    assert n_circles == len(snap.points) + len(snap.reference_points)
    assert snap.explanation is not None and snap.explanation["new_clusters"]
    for cluster in snap.explanation["new_clusters"]:
        assert f"<td>{cluster['label']}</td>" in section
        for example in cluster["examples"][:3]:
            if "<" not in example:
                assert f'<code class="id">{example}</code>' in section
    assert section.count('<tr class="cluster">') == len(snap.explanation["new_clusters"])


def test_hostile_ids_are_escaped(served) -> None:
    _, page, _ = served
    html = page.text
    assert HOSTILE not in html
    assert "&lt;script&gt;document.body.dataset.pwned=1&lt;/script&gt;" in html
    tags = _Tags()
    tags.feed(html)
    assert [t for t, _ in tags.seen].count("script") == 1  # only the page's own refresh script
    assert [t for t, _ in tags.seen].count("img") == 0


def test_self_contained(served) -> None:
    _, page, _ = served
    html = page.text
    assert not re.search(r"https?:|//[a-z0-9]", html, re.I), "external URL in the page"
    tags = _Tags()
    tags.feed(html)
    linked = [(t, a) for t, attrs in tags.seen for a, _ in attrs if a in _LINKING]
    assert not linked, linked
    assert {t for t, _ in tags.seen} >= {"svg", "polyline", "circle", "script", "style"}
    assert "@import" not in html and "url(" not in html
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert f'<script nonce="{nonce}">' in html and f'<style nonce="{nonce}">' in html


def test_nonce_changes_per_response(served) -> None:
    client, page, _ = served
    again = client.get("/")
    assert again.headers["content-security-policy"] != page.headers["content-security-policy"]


def test_refresh_parameter(served) -> None:
    client, _, _ = served
    off = client.get("/", params={"refresh": 0})
    assert off.status_code == 200 and "<script" not in off.text
    fast = client.get("/", params={"refresh": 2})
    assert "setInterval(update, 2000)" in fast.text
    for bad in ("-1", "3601", "soon"):
        r = client.get("/", params={"refresh": bad})
        assert r.status_code in (400, 422), (bad, r.status_code)
        assert "refresh" in r.text


def test_empty_service_and_protected_reads(reference: Reference) -> None:
    with TestClient(_app(reference)) as client:
        page = client.get("/")
        assert page.status_code == 200 and 'id="no-streams"' in page.text
    token = "s3cret-token-of-16+"
    with TestClient(_app(reference, token=token, protect_reads=True)) as client:
        assert client.get("/").status_code == 401
        ok = client.get("/", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200


def test_render_without_windows(served) -> None:
    """A stream with rows but no closed window yet shows 'pending' and no charts."""
    _, _, snaps = served
    snap = snaps["steady"]
    from dataclasses import replace

    empty = replace(snap, latest=None, history=(), points=np.empty((0, 2), np.float32))
    html = render_page([empty], refresh=0, nonce="n")
    assert 'data-verdict="pending"' in html and "drift-chart" not in html


def test_fragment_is_the_main_element_only(served) -> None:
    """What the refresh script fetches: the <main> element, no style or script (a parsed
    <style> with another response's nonce would be a CSP violation in the page)."""
    client, _, _ = served
    frag = client.get("/", params={"fragment": 1}).text.strip()
    assert frag.startswith('<main id="content"') and frag.endswith("</main>")
    assert "<style" not in frag and "<script" not in frag and "<head" not in frag
    assert 'data-stream="shifted"' in frag and "data-generated=" in frag
