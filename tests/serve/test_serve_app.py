"""The HTTP routes through FastAPI's TestClient: ingest, queries, every 4xx kind, auth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from embdrift import Reference
from embdrift.errors import InvalidParameterError, UnsafeBindError
from embdrift.serve import MonitorSettings, ServeConfig, check_bind, create_app
from embdrift.store import Store
from embdrift.stream import STREAM_METRICS
from embdrift.synthetic import World
from serve_support import DIM, WINDOW, npy_bytes

TOKEN = "s3cret-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_client(ref: Reference, settings: MonitorSettings, tmp_path: Path, **kw) -> TestClient:
    config = ServeConfig(
        references={"search": ref},
        monitor=settings,
        state_dir=tmp_path / "state",
        **kw,
    )
    return TestClient(create_app(config))


def rows(world: World, n: int, seed: int, *, shift: float = 0.0) -> np.ndarray:
    x, _ = world.sample(n, weights=np.array([1.0, 1.0, 1.0, 1.0, 0.0]), seed=seed)
    return (x + shift).astype(np.float32)


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_ingest_json_and_npy_close_windows_and_report(
    serve_ref, serve_world, settings, tmp_path
) -> None:
    x = rows(serve_world, 450, seed=2)
    with make_client(serve_ref, settings, tmp_path) as client:
        r = client.post(
            "/v1/streams/search/embeddings",
            json={"embeddings": x[:150].tolist(), "ids": [f"a{i}" for i in range(150)]},
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"stream": "search", "accepted": 150, "count": 150, "windows_closed": 0}
        r = client.post(
            "/v1/streams/search/embeddings",
            content=npy_bytes(x[150:].astype(np.float64)),
            headers={"Content-Type": "application/x-npy"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["count"] == 450 and r.json()["windows_closed"] == 2

        listing = client.get("/v1/streams").json()["streams"]
        assert [s["stream"] for s in listing] == ["search"]
        assert listing[0]["count"] == 450 and listing[0]["windows"] == 2
        assert listing[0]["drifted"] is False

        drift = client.get("/v1/streams/search/drift", params={"limit": 2}).json()
        assert [w["window"]["index"] for w in drift["windows"]] == [0, 1]
        result = drift["windows"][-1]["window"]["result"]
        assert set(result["metrics"]) == set(STREAM_METRICS)
        assert drift["windows"][0]["window"]["start"] == 0
        assert drift["windows"][0]["window"]["end"] == WINDOW
        # the first window's example ids: ours for rows < 150, row numbers for the npy rows
        allowed = {f"a{i}" for i in range(150)} | {str(i) for i in range(150, WINDOW)}
        examples = drift["windows"][0]["window"]["example_ids"]
        assert examples and set(examples) <= allowed

        snap = client.app.state.registry.snapshot("search")
        assert snap.points.shape == (len(snap.point_ids), 2)
        assert snap.reference_points.shape[1] == 2
        json.dumps(snap.to_dict())  # JSON-ready for the page


def test_json_and_npy_bodies_give_the_same_monitor_state(
    serve_ref, serve_world, settings, tmp_path
) -> None:
    x = rows(serve_world, 300, seed=3)
    sums = []
    for i, send in enumerate(("json", "npy")):
        with make_client(serve_ref, settings, tmp_path / str(i)) as client:
            if send == "json":
                r = client.post("/v1/streams/search/embeddings", json={"embeddings": x.tolist()})
            else:
                r = client.post(
                    "/v1/streams/search/embeddings",
                    content=npy_bytes(x),
                    headers={"Content-Type": "application/x-npy"},
                )
            assert r.status_code == 200
            mon = client.app.state.registry._streams["search"].monitor
            sums.append(mon._current.rff.feature_sum)
    np.testing.assert_array_equal(sums[0], sums[1])


BAD_REQUESTS = [
    # (what, path, kwargs, status, kind)
    (
        "not json",
        "search",
        {"content": b"{oops", "headers": {"Content-Type": "application/json"}},
        400,
        "invalid_body",
    ),
    ("no embeddings field", "search", {"json": {"rows": [[1.0]]}}, 400, "invalid_body"),
    (
        "ragged rows",
        "search",
        {"json": {"embeddings": [[0.0] * DIM, [0.0] * 3]}},
        422,
        "invalid_embeddings",
    ),
    ("strings", "search", {"json": {"embeddings": [["a"] * DIM]}}, 422, "invalid_embeddings"),
    ("empty", "search", {"json": {"embeddings": []}}, 422, "invalid_embeddings"),
    (
        "NaN",
        "search",
        {
            "content": b'{"embeddings": [[NaN' + b", 0.0" * (DIM - 1) + b"]]}",
            "headers": {"Content-Type": "application/json"},
        },
        422,
        "invalid_embeddings",
    ),
    (
        "wrong dimension",
        "search",
        {"json": {"embeddings": [[0.0] * (DIM + 1)]}},
        422,
        "dimension_mismatch",
    ),
    (
        "ids length",
        "search",
        {"json": {"embeddings": [[0.0] * DIM], "ids": ["a", "b"]}},
        400,
        "invalid_body",
    ),
    (
        "outcome length",
        "search",
        {"json": {"embeddings": [[0.0] * DIM], "outcomes": {"click": [1, 0]}}},
        400,
        "invalid_body",
    ),
    (
        "bad outcome name",
        "search",
        {"json": {"embeddings": [[0.0] * DIM], "outcomes": {"Click!": [1]}}},
        400,
        "bad_stream_name",
    ),
    (
        "timestamps backwards",
        "search",
        {"json": {"embeddings": [[0.0] * DIM] * 2, "timestamps": [10.0, 5.0]}},
        422,
        "invalid_body",
    ),
    (
        "bad stream name",
        "Search%20Me",
        {"json": {"embeddings": [[0.0] * DIM]}},
        400,
        "bad_stream_name",
    ),
    ("path trick", "%2E%2E", {"json": {"embeddings": [[0.0] * DIM]}}, 400, "bad_stream_name"),
    ("unknown stream", "other", {"json": {"embeddings": [[0.0] * DIM]}}, 404, "unknown_stream"),
    (
        "unsupported type",
        "search",
        {"content": b"1,2", "headers": {"Content-Type": "text/csv"}},
        415,
        "invalid_body",
    ),
    (
        "npy of objects",
        "search",
        {
            "content": npy_bytes(np.array([[{"a": 1}]], dtype=object)),
            "headers": {"Content-Type": "application/x-npy"},
        },
        422,
        "invalid_embeddings",
    ),
    (
        "npy 3-D",
        "search",
        {
            "content": npy_bytes(np.zeros((2, 2, DIM), np.float32)),
            "headers": {"Content-Type": "application/x-npy"},
        },
        422,
        "invalid_embeddings",
    ),
    (
        "npy int",
        "search",
        {
            "content": npy_bytes(np.zeros((2, DIM), np.int64)),
            "headers": {"Content-Type": "application/x-npy"},
        },
        422,
        "invalid_embeddings",
    ),
    (
        "npy truncated",
        "search",
        {
            "content": npy_bytes(np.zeros((4, DIM), np.float32))[:-7],
            "headers": {"Content-Type": "application/x-npy"},
        },
        400,
        "invalid_body",
    ),
    (
        "npy garbage",
        "search",
        {"content": b"\x93NUMPY garbage", "headers": {"Content-Type": "application/x-npy"}},
        400,
        "invalid_body",
    ),
    ("too many rows", "search", {"json": {"embeddings": [[0.0] * DIM] * 51}}, 413, "too_large"),
    (
        "absurd npy shape",
        "search",
        {
            "content": npy_bytes(np.zeros((2, DIM), np.float32)).replace(
                b"(2, 32)", b"(10**12, 32)".replace(b"10**12", b"1" + b"0" * 12)
            ),
            "headers": {"Content-Type": "application/x-npy"},
        },
        413,
        "too_large",
    ),
    (
        "body too large",
        "search",
        {"content": b"[" + b" " * 70_000 + b"]", "headers": {"Content-Type": "application/json"}},
        413,
        "too_large",
    ),
]


@pytest.mark.parametrize(
    ("what", "stream", "kwargs", "status", "kind"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
def test_bad_input_is_a_clear_4xx_and_changes_nothing(
    serve_ref, settings, tmp_path, what, stream, kwargs, status, kind
) -> None:
    with make_client(serve_ref, settings, tmp_path, max_rows=50, max_body_bytes=65_536) as client:
        ok = client.post("/v1/streams/search/embeddings", json={"embeddings": [[0.1] * DIM] * 3})
        assert ok.status_code == 200
        registry = client.app.state.registry
        wal = registry._streams["search"].wal
        size_before = wal.size_bytes()
        r = client.post(f"/v1/streams/{stream}/embeddings", **kwargs)
        assert r.status_code == status, r.text
        body = r.json()
        assert body["error"] == kind
        assert len(body["detail"]) > 20  # a message, not a code
        # nothing written, nothing counted, no stream created
        assert wal.size_bytes() == size_before
        assert registry.snapshot("search").count == 3
        assert registry.names() == ["search"]
        assert registry.rejections == {kind: 1}
        text = client.get("/metrics").text
        samples = metric_samples(text)
        assert samples[("embdrift_rejected_batches_total", (("reason", kind),))] == 1.0


def test_error_messages_name_problem_and_fix(serve_ref, settings, tmp_path) -> None:
    with make_client(serve_ref, settings, tmp_path) as client:
        r = client.post("/v1/streams/search/embeddings", json={"embeddings": [[0.0] * 5]})
        assert f"dimension {DIM}" in r.json()["detail"] and "got 5" in r.json()["detail"]
        r = client.post("/v1/streams/Bad/embeddings", json={"embeddings": [[0.0] * DIM]})
        assert "'bad'" in r.json()["detail"]  # a suggested valid name


def test_default_reference_creates_streams_on_first_ingest(serve_ref, settings, tmp_path) -> None:
    config = ServeConfig(default_reference=serve_ref, monitor=settings, state_dir=tmp_path)
    with TestClient(create_app(config)) as client:
        assert client.get("/v1/streams").json() == {"streams": []}
        r = client.post("/v1/streams/new-one/embeddings", json={"embeddings": [[0.0] * DIM]})
        assert r.status_code == 200
        assert client.app.state.registry.names() == ["new-one"]
        assert (tmp_path / "streams" / "new-one" / "wal.log").stat().st_size > 0
        # a rejected first batch creates no stream
        r = client.post("/v1/streams/another/embeddings", json={"embeddings": [[0.0] * 3]})
        assert r.status_code == 422
        assert client.app.state.registry.names() == ["new-one"]
        assert not (tmp_path / "streams" / "another").exists()


def test_stream_limit_is_overloaded(serve_ref, settings, tmp_path) -> None:
    config = ServeConfig(
        default_reference=serve_ref, monitor=settings, state_dir=tmp_path, max_streams=1
    )
    with TestClient(create_app(config)) as client:
        assert client.post(
            "/v1/streams/a/embeddings", json={"embeddings": [[0.0] * DIM]}
        ).is_success
        r = client.post("/v1/streams/b/embeddings", json={"embeddings": [[0.0] * DIM]})
        assert r.status_code == 429 and r.json()["error"] == "overloaded"


def test_token_guards_writes_and_optionally_reads(serve_ref, settings, tmp_path) -> None:
    body = {"embeddings": [[0.0] * DIM]}
    with make_client(serve_ref, settings, tmp_path / "a", token=TOKEN) as client:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token-xxxxxxxxxx"},
            {"Authorization": f"Basic {TOKEN}"},
        ):
            r = client.post("/v1/streams/search/embeddings", json=body, headers=headers)
            assert r.status_code == 401 and r.json()["error"] == "unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"
        r = client.post("/v1/streams/search/outcomes", json={"outcomes": {"c": [1]}})
        assert r.status_code == 401
        assert client.app.state.registry.snapshot("search").count == 0
        assert client.post("/v1/streams/search/embeddings", json=body, headers=AUTH).is_success
        assert client.get("/metrics").status_code == 200  # reads public by default
        assert client.get("/v1/streams").status_code == 200
        assert client.app.state.registry.rejections == {"unauthorized": 4}
    with make_client(
        serve_ref, settings, tmp_path / "b", token=TOKEN, protect_reads=True
    ) as client:
        for path in ("/metrics", "/v1/streams", "/v1/streams/search/drift"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers=AUTH).status_code == 200
        assert client.get("/healthz").status_code == 200


def test_unsafe_bind_and_config_errors() -> None:
    check_bind("127.0.0.1", None)
    check_bind("localhost", None)
    check_bind("::1", None)
    with pytest.raises(UnsafeBindError, match="--token"):
        check_bind("0.0.0.0", None)
    with pytest.raises(UnsafeBindError, match="--token"):
        check_bind("192.168.1.20", None)
    check_bind("0.0.0.0", TOKEN)
    with pytest.raises(InvalidParameterError, match="at least one reference"):
        ServeConfig()


def test_outcome_rates_are_window_means(serve_ref, serve_world, settings, tmp_path) -> None:
    x = rows(serve_world, 2 * WINDOW, seed=5)
    clicks = np.tile([1.0, 0.0, 0.0, 1.0], 2 * WINDOW // 4)
    clicks[: WINDOW // 2] = 1.0  # first window: rate 0.75, second: 0.5
    with make_client(serve_ref, settings, tmp_path) as client:
        r = client.post(
            "/v1/streams/search/embeddings",
            json={
                "embeddings": x[:250].tolist(),
                "outcomes": {"click": clicks[:250].tolist(), "answered": [None] * 250},
            },
        )
        assert r.status_code == 200
        r = client.post(
            "/v1/streams/search/outcomes", json={"outcomes": {"click": [1.0, 1.0, 0.0, 0.0]}}
        )
        assert r.json() == {"stream": "search", "accepted": 4}
        r = client.post(
            "/v1/streams/search/embeddings",
            json={"embeddings": x[250:].tolist(), "outcomes": {"click": clicks[250:].tolist()}},
        )
        history = client.app.state.registry.snapshot("search").history
        assert [w.outcome_rates.get("click") for w in history] == [
            pytest.approx(clicks[:WINDOW].mean()),
            pytest.approx((clicks[WINDOW:].sum() + 2.0) / (WINDOW + 4)),
        ]
        assert "answered" not in history[-1].outcome_rates  # only nulls: no rate
        samples = metric_samples(client.get("/metrics").text)
        key = (("outcome", "click"), ("stream", "search"))
        assert samples[("embdrift_outcome_rate", key)] == pytest.approx(
            history[-1].outcome_rates["click"]
        )
        assert samples[("embdrift_outcome_events_total", key)] == 2 * WINDOW + 4
        r = client.post(
            "/v1/streams/search/outcomes", json={"outcomes": {"click": [1, 2], "x": [1]}}
        )
        assert r.status_code == 400


def test_store_receives_each_window_once(serve_ref, serve_world, settings, tmp_path) -> None:
    x = rows(serve_world, 2 * WINDOW + 50, seed=6)
    db = tmp_path / "drift.duckdb"
    with make_client(serve_ref, settings, tmp_path, store=db) as client:
        client.post("/v1/streams/search/embeddings", json={"embeddings": x.tolist()})
    stored = Store(db).results(stream="search")
    assert [r.source for r in stored] == ["serve:search:window:0", "serve:search:window:1"]
    assert stored[1].result.n_current == WINDOW


def test_openapi_documents_routes_and_bodies(serve_ref, settings, tmp_path) -> None:
    with make_client(serve_ref, settings, tmp_path, token=TOKEN) as client:
        doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    for path in (
        "/v1/streams/{stream}/embeddings",
        "/v1/streams/{stream}/outcomes",
        "/v1/streams",
        "/v1/streams/{stream}/drift",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths
    ingest = paths["/v1/streams/{stream}/embeddings"]["post"]
    assert set(ingest["requestBody"]["content"]) == {"application/json", "application/x-npy"}
    assert {"413", "422", "401"} <= set(ingest["responses"])
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
