"""The Prometheus exposition against the metric contract (names, types, labels, values), the
in-process collector, and the CLI's refusals."""

from __future__ import annotations

import dataclasses

import numpy as np
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from embdrift.cli import app as cli_app
from embdrift.serve import DriftCollector, ServeConfig, StreamRegistry, create_app
from embdrift.serve.batch import Batch
from embdrift.stream import STREAM_METRICS
from serve_support import WINDOW

# The contract (METRICS-CONTRACT.md): family name -> (type, label names).
CONTRACT = {
    "embdrift_drift_score": ("gauge", {"stream", "metric"}),
    "embdrift_drift_threshold": ("gauge", {"stream", "metric"}),
    "embdrift_drift_p_value": ("gauge", {"stream", "metric"}),
    "embdrift_drift_effect_size": ("gauge", {"stream", "metric"}),
    "embdrift_drift_window_drifted": ("gauge", {"stream"}),
    "embdrift_drift_alert": ("gauge", {"stream"}),
    "embdrift_new_cluster_share": ("gauge", {"stream"}),
    "embdrift_window_rows": ("gauge", {"stream"}),
    "embdrift_window_end_timestamp_seconds": ("gauge", {"stream"}),
    "embdrift_last_ingest_timestamp_seconds": ("gauge", {"stream"}),
    "embdrift_outcome_rate": ("gauge", {"stream", "outcome"}),
    "embdrift_ingested_embeddings": ("counter", {"stream"}),
    "embdrift_ingested_batches": ("counter", {"stream"}),
    "embdrift_rejected_batches": ("counter", {"reason"}),
    "embdrift_windows": ("counter", {"stream"}),
    "embdrift_drift_windows": ("counter", {"stream"}),
    "embdrift_outcome_events": ("counter", {"stream", "outcome"}),
    "embdrift_ingest_latency_seconds": ("histogram", {"stream"}),
}
REASONS = {
    "invalid_body",
    "invalid_embeddings",
    "dimension_mismatch",
    "too_large",
    "unauthorized",
    "unknown_stream",
    "bad_stream_name",
    "overloaded",
    "storage",  # a state write the disk refused (HTTP 507)
}


def test_exposition_follows_the_contract(serve_ref, serve_world, settings, tmp_path) -> None:
    config = ServeConfig(
        references={"search": serve_ref},
        monitor=dataclasses.replace(settings, explain=True),
        state_dir=tmp_path,
    )
    x, _ = serve_world.sample(2 * WINDOW + 30, weights=np.ones(5), seed=60)
    clicks = (np.arange(x.shape[0]) % 3 == 0).astype(float).tolist()
    with TestClient(create_app(config)) as client:
        r = client.post(
            "/v1/streams/search/embeddings",
            json={"embeddings": x.tolist(), "outcomes": {"click": clicks}},
        )
        assert r.status_code == 200
        client.post("/v1/streams/search/embeddings", json={"embeddings": [[1.0]]})  # rejected
        client.app.state.registry.drain()
        text = client.get("/metrics").text
        drift = client.get("/v1/streams/search/drift").json()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, (kind, labels) in CONTRACT.items():
        assert name in families, f"{name} missing"
        family = families[name]
        assert family.type == kind, name
        assert family.samples, f"{name} has no samples"
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample.labels)
            if "metric" in sample.labels:
                assert sample.labels["metric"] in {*STREAM_METRICS, "combined"}
    # nothing renamed, nothing undeclared (prometheus_client adds the histogram's _created)
    ours = {n for n in families if n.startswith("embdrift_") and not n.endswith("_created")}
    assert ours == set(CONTRACT)

    def value(name: str, **labels: str) -> float:
        (hit,) = [s.value for s in _samples(families, name) if s.labels == labels]
        return hit

    latest = drift["windows"][-1]
    result = latest["window"]["result"]
    for metric, m in result["metrics"].items():
        assert value("embdrift_drift_score", stream="search", metric=metric) == m["value"]
        assert value("embdrift_drift_p_value", stream="search", metric=metric) == m["p_value"]
        assert value("embdrift_drift_threshold", stream="search", metric=metric) == m["threshold"]
    assert value("embdrift_drift_p_value", stream="search", metric="combined") == result["p_value"]
    assert value("embdrift_window_rows", stream="search") == WINDOW
    assert value("embdrift_new_cluster_share", stream="search") == latest["new_cluster_share"]
    assert value("embdrift_ingested_embeddings_total", stream="search") == x.shape[0]
    assert value("embdrift_windows_total", stream="search") == 2
    assert (
        value("embdrift_outcome_rate", stream="search", outcome="click")
        == (latest["outcome_rates"]["click"])
    )
    assert value("embdrift_outcome_events_total", stream="search", outcome="click") == len(clicks)
    assert {s.labels["reason"] for s in _samples(families, "embdrift_rejected_batches_total")} == (
        REASONS
    )
    assert value("embdrift_rejected_batches_total", reason="dimension_mismatch") == 1
    assert value("embdrift_ingest_latency_seconds_count", stream="search") == 1


def _samples(families, name):
    return [s for f in families.values() for s in f.samples if s.name == name]


def test_collector_in_process_on_an_apps_own_registry(serve_ref, serve_world, settings) -> None:
    streams = StreamRegistry(default_reference=serve_ref, settings=settings).open()
    registry = CollectorRegistry()
    DriftCollector(streams, registry=registry)
    assert registry.get_sample_value("embdrift_drift_alert", {"stream": "a"}) is None
    x, _ = serve_world.sample(WINDOW, weights=np.ones(5), seed=61)
    streams.ingest("a", Batch(x.astype(np.float32)))
    assert registry.get_sample_value("embdrift_ingested_embeddings_total", {"stream": "a"}) == (
        WINDOW
    )
    assert registry.get_sample_value("embdrift_window_rows", {"stream": "a"}) == WINDOW
    assert registry.get_sample_value("embdrift_drift_alert", {"stream": "a"}) in (0.0, 1.0)
    p = registry.get_sample_value("embdrift_drift_p_value", {"stream": "a", "metric": "combined"})
    assert p == streams.snapshot("a").latest.window.result.p_value


def test_cli_refuses_public_bind_without_token_and_bad_references(serve_ref_path) -> None:
    runner = CliRunner()
    r = runner.invoke(cli_app, ["serve", "-r", str(serve_ref_path), "--host", "0.0.0.0"])
    assert r.exit_code == 2
    assert "without an access token" in r.output and "--token" in r.output
    r = runner.invoke(cli_app, ["serve", "-r", f"Bad Name={serve_ref_path}"])
    assert r.exit_code == 2 and "stream name must match" in r.output
    r = runner.invoke(
        cli_app, ["serve", "-r", str(serve_ref_path), "--host", "0.0.0.0", "--token", "short"]
    )
    assert r.exit_code == 2 and "at least 16 characters" in r.output
    help_text = runner.invoke(cli_app, ["serve", "--help"]).output
    for flag in (
        "--reference",
        "--host",
        "--port",
        "--store",
        "--state-dir",
        "--window",
        "--alpha",
        "--token",
    ):
        assert flag in help_text


def test_cli_unusable_state_folder_exits_2_before_serving(
    serve_ref, serve_ref_path, settings, tmp_path
) -> None:
    state = tmp_path / "state"
    reg = StreamRegistry(references={"old": serve_ref}, settings=settings, state_dir=state)
    reg.open().close()
    r = CliRunner().invoke(
        cli_app, ["serve", "-r", f"new={serve_ref_path}", "--state-dir", str(state)]
    )
    assert r.exit_code == 2
    assert "Unknown stream 'old'" in r.output and "--reference" in r.output
