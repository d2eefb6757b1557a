"""Readers never wait for a stream, and excess writes are refused before their body is read.

In-process (FastAPI's TestClient), deterministic: the test itself holds a stream's lock, as a
window test would, or fills the in-flight limit with a request blocked on that lock.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from embdrift.errors import InvalidParameterError
from embdrift.serve import ServeConfig, create_app
from serve_support import DIM, WINDOW, npy_bytes

NPY = {"Content-Type": "application/x-npy"}


def _rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def _sample(text: str, name: str, labels: dict[str, str]) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


def _in_thread(call, *, timeout: float) -> tuple[bool, dict]:
    """Run ``call`` in a thread; (finished within ``timeout``, its result under "out")."""
    box: dict = {}

    def run() -> None:
        box["out"] = call()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    return not t.is_alive(), box


def test_readers_answer_while_a_stream_lock_is_held(serve_ref, settings, tmp_path) -> None:
    # lock_timeout far above the join timeout: a reader that took the lock would still be
    # waiting when the join gives up, instead of answering 429.
    config = ServeConfig(
        default_reference=serve_ref, monitor=settings, state_dir=tmp_path, lock_timeout=600
    )
    app = create_app(config)
    with TestClient(app) as client:
        n = WINDOW + WINDOW // 2
        r = client.post("/v1/streams/s/embeddings", content=npy_bytes(_rows(n, 0)), headers=NPY)
        assert r.status_code == 200 and r.json()["windows_closed"] == 1
        stream = app.state.registry._streams["s"]

        def read() -> dict[str, object]:
            return {
                "metrics": client.get("/metrics"),
                "drift": client.get("/v1/streams/s/drift"),
                "streams": client.get("/v1/streams"),
                "page": client.get("/"),
            }

        with stream.lock:  # what a running window test holds
            finished, box = _in_thread(read, timeout=60)
        assert finished, "a reader waited for the stream lock"
        answers = box["out"]
        assert {k: v.status_code for k, v in answers.items()} == dict.fromkeys(answers, 200)
        text = answers["metrics"].text
        labels = {"stream": "s"}
        assert _sample(text, "embdrift_ingested_embeddings_total", labels) == n
        assert _sample(text, "embdrift_windows_total", labels) == 1
        assert answers["drift"].json()["count"] == n
        assert answers["streams"].json()["streams"][0]["count"] == n


def test_readers_see_the_last_published_state_not_a_half_applied_one(
    serve_ref, settings, tmp_path
) -> None:
    """While a write holds the lock, readers keep the previous snapshot; after it, the new."""
    config = ServeConfig(default_reference=serve_ref, monitor=settings, state_dir=tmp_path)
    app = create_app(config)
    with TestClient(app) as client:
        client.post("/v1/streams/s/embeddings", content=npy_bytes(_rows(50, 1)), headers=NPY)
        registry = app.state.registry
        before = registry.snapshot("s")
        stream = registry._streams["s"]
        with stream.lock:
            stream.batches += 7  # a change in progress, not yet published
            assert registry.snapshot("s") is before
            stream.batches -= 7
        client.post("/v1/streams/s/embeddings", content=npy_bytes(_rows(30, 2)), headers=NPY)
        after = registry.snapshot("s")
        assert (before.count, after.count) == (50, 80)
        assert (before.batches, after.batches) == (1, 2)
        with pytest.raises(ValueError):
            after.points[:] = 0  # published snapshots are read-only


def test_a_full_inflight_limit_refuses_at_once_with_503_and_writes_nothing(
    serve_ref, settings, tmp_path
) -> None:
    config = ServeConfig(
        default_reference=serve_ref,
        monitor=settings,
        state_dir=tmp_path,
        max_inflight=1,
        max_body_bytes=4096,
        lock_timeout=600,
    )
    app = create_app(config)
    with TestClient(app) as client:
        first = npy_bytes(_rows(20, 3))
        assert client.post("/v1/streams/s/embeddings", content=first, headers=NPY).is_success
        registry, gate = app.state.registry, app.state.inflight
        stream = registry._streams["s"]
        wal = tmp_path / "streams" / "s" / "wal.log"
        size = wal.stat().st_size
        with stream.lock:
            # One request admitted, parked on the stream's lock: the limit is reached.
            finished, box = _in_thread(
                lambda: client.post("/v1/streams/s/embeddings", content=first, headers=NPY),
                timeout=0.5,
            )
            assert not finished
            deadline = time.monotonic() + 30
            while gate.count < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert gate.count == 1
            answers = [
                client.post("/v1/streams/s/embeddings", content=first, headers=NPY),
                client.post("/v1/streams/s/outcomes", json={"outcomes": {"c": [1.0]}}),
                # larger than max_body_bytes: refused as overloaded, so never read (not 413)
                client.post("/v1/streams/s/embeddings", content=b"x" * 10_000, headers=NPY),
            ]
            for r in answers:
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"] == "1"
                assert r.json()["error"] == "overloaded"
                assert "--max-inflight 1" in r.json()["detail"]
            assert wal.stat().st_size == size  # nothing written while refused
            assert client.get("/metrics").status_code == 200  # reads are not limited
        deadline = time.monotonic() + 60
        while "out" not in box and time.monotonic() < deadline:
            time.sleep(0.01)
        assert box["out"].status_code == 200  # the parked request completes once free
        assert gate.count == 0
        snap = registry.snapshot("s")
        assert (snap.count, snap.batches) == (40, 2)
        assert registry.rejections == {"overloaded": 3}
        text = client.get("/metrics").text
        assert _sample(text, "embdrift_rejected_batches_total", {"reason": "overloaded"}) == 3


def test_openapi_declares_the_refusals_with_retry_after(serve_ref, settings) -> None:
    app = create_app(ServeConfig(default_reference=serve_ref, monitor=settings))
    spec = app.openapi()
    for path in ("/v1/streams/{stream}/embeddings", "/v1/streams/{stream}/outcomes"):
        responses = spec["paths"][path]["post"]["responses"]
        for code in ("429", "503"):
            assert "Retry-After" in responses[code]["headers"]


def test_max_inflight_is_validated(serve_ref) -> None:
    with pytest.raises(InvalidParameterError, match="max_inflight"):
        ServeConfig(default_reference=serve_ref, max_inflight=0)
