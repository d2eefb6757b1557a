"""The contract list the dashboard tests check against is what ``embdrift serve`` exports: the
families scraped from the real app's /metrics equal it (names, types, the stream label)."""

from __future__ import annotations

import numpy as np
from dashboard_promql import CONTRACT, STREAMLESS
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from embdrift import Reference
from embdrift.serve import MonitorSettings, ServeConfig, create_app


def test_served_families_equal_the_contract() -> None:
    rng = np.random.default_rng(3)
    ref = Reference.fit(rng.normal(size=(600, 8)), n_components=3, seed=0)
    settings = MonitorSettings(window=100, n_calibration=99, reservoir_size=100)
    app = create_app(ServeConfig(references={"s": ref}, monitor=settings))
    with TestClient(app) as client:
        body = {
            "embeddings": rng.normal(size=(100, 8)).tolist(),
            "outcomes": {"success_rate": rng.random(100).round().tolist()},
        }
        assert client.post("/v1/streams/s/embeddings", json=body).status_code == 200
        assert client.post("/v1/streams/s/embeddings", content=b"{").status_code == 400
        app.state.registry.drain()  # the new-cluster share comes from the explanation
        text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    served = {}
    for name, family in families.items():
        if not name.startswith("embdrift_"):
            continue
        if name.endswith("_created") and name.removesuffix("_created") in CONTRACT:
            continue  # prometheus_client's creation-time series of a histogram or counter
        full = f"{name}_total" if family.type == "counter" else name
        served[full] = family.type
        for sample in family.samples:
            assert ("stream" in sample.labels) == (full not in STREAMLESS), sample
    assert served == CONTRACT
