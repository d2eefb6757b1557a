"""Durability against a REAL ``embdrift serve`` (uvicorn subprocess on a free 127.0.0.1 port):
clean restarts, ``kill -9`` after acknowledged batches, and torn log tails.

The uninterrupted twin of each run is a :class:`StreamRegistry` fed the same batches in this
process. Counts, random-feature sums, moments and the reservoirs (A-Res keys from a seeded
PCG64 whose state is checkpointed) must be *identical*, byte for byte in their serialised
form. The KLL quantile sketches
(datasketches) draw their compaction coin flips from an unseeded generator, so two runs over
the same rows differ within the sketch's rank error: they are compared on ranks, within twice
the stated rank error ``rank_error(k)`` (:func:`fault_campaign.assert_same_state`, the
comparison the kill campaign uses too).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from embdrift.serve import StreamRegistry
from embdrift.serve.batch import Batch
from embdrift.store import Store
from fault_campaign import assert_same_state, assert_same_windows, cli_settings, server_args
from serve_support import WINDOW, npy_bytes

pytestmark = pytest.mark.integration

BATCH = 130


def batches(world, n: int, seed: int = 11) -> list[np.ndarray]:
    x, _ = world.sample(n * BATCH, weights=np.array([1.0, 1.0, 1.0, 1.0, 1.0]), seed=seed)
    return [x[i * BATCH : (i + 1) * BATCH].astype(np.float32) for i in range(n)]


def post(url: str, x: np.ndarray, i: int) -> httpx.Response:
    ids = [f"b{i}-{j}" for j in range(x.shape[0])]
    if i % 2:  # alternate the two body formats
        return httpx.post(
            f"{url}/v1/streams/search/embeddings",
            json={"embeddings": x.tolist(), "ids": ids},
            timeout=60,
        )
    return httpx.post(
        f"{url}/v1/streams/search/embeddings",
        content=npy_bytes(x),
        headers={"Content-Type": "application/x-npy"},
        timeout=60,
    )


def twin(ref, xs: list[np.ndarray]) -> StreamRegistry:
    """The uninterrupted run, in process, without a log."""
    reg = StreamRegistry(references={"search": ref}, settings=cli_settings()).open()
    for i, x in enumerate(xs):
        ids = np.array([f"b{i}-{j}" for j in range(x.shape[0])]) if i % 2 else None
        reg.ingest("search", Batch(x, ids))
    return reg


def recovered(ref, state: Path) -> StreamRegistry:
    """The state a server left in ``state``, loaded the way a restart loads it."""
    return StreamRegistry(references={"search": ref}, settings=cli_settings(), state_dir=state)


def test_clean_restart_restores_everything(server_factory, serve_ref_path, serve_world, tmp_path):
    state = tmp_path / "state"
    server = server_factory(server_args(serve_ref_path, state), tmp_path / "log1").start()
    for i, x in enumerate(batches(serve_world, 5)):
        assert post(server.url, x, i).status_code == 200
    before = httpx.get(f"{server.url}/v1/streams/search/drift?limit=5").json()
    listing = httpx.get(f"{server.url}/v1/streams").json()
    server.stop()
    assert (state / "streams" / "search" / "wal.log").stat().st_size == 0  # all checkpointed
    again = server_factory(server_args(serve_ref_path, state), tmp_path / "log2").start()
    assert httpx.get(f"{again.url}/v1/streams/search/drift?limit=5").json() == before
    assert httpx.get(f"{again.url}/v1/streams").json() == listing
    assert listing["streams"][0]["count"] == 5 * BATCH
    assert post(again.url, batches(serve_world, 1, seed=99)[0], 0).json()["count"] == 6 * BATCH
    again.stop()


def test_kill_9_after_acknowledged_batches_loses_nothing(
    server_factory, serve_ref, serve_ref_path, serve_world, tmp_path
):
    state, db = tmp_path / "state", tmp_path / "drift.duckdb"
    args = server_args(serve_ref_path, state, "--checkpoint-every", "4", "--store", str(db))
    xs = batches(serve_world, 10)
    server = server_factory(args, tmp_path / "log1").start()
    acked = 0
    for i, x in enumerate(xs):
        r = post(server.url, x, i)
        assert r.status_code == 200
        acked += r.json()["accepted"]
    server.kill()  # SIGKILL right after the 10th acknowledgement: no shutdown hook
    wal = state / "streams" / "search" / "wal.log"
    assert wal.stat().st_size > 0  # records 9 and 10 exist only in the log

    again = server_factory(args, tmp_path / "log2").start()
    listing = httpx.get(f"{again.url}/v1/streams").json()["streams"][0]
    assert listing["count"] == acked == 10 * BATCH
    assert listing["batches"] == 10 and listing["windows"] == 10 * BATCH // WINDOW
    again.stop()

    reference_run = twin(serve_ref, xs)
    restored = recovered(serve_ref, state).open()
    mon_a = restored._streams["search"].monitor
    mon_b = reference_run._streams["search"].monitor
    assert mon_a.count == mon_b.count == acked
    assert_same_state(mon_a, mon_b)
    assert_same_windows(restored, reference_run)
    restored.close()
    # windows replayed after the crash were not stored twice
    sources = [r.source for r in Store(db).results(stream="search")]
    assert sources == [f"serve:search:window:{i}" for i in range(10 * BATCH // WINDOW)]


def test_torn_log_tail_is_truncated_and_earlier_records_survive(
    server_factory, serve_ref, serve_ref_path, serve_world, tmp_path
):
    state = tmp_path / "state"
    args = server_args(serve_ref_path, state, "--checkpoint-every", "1000")
    xs = batches(serve_world, 3)
    server = server_factory(args, tmp_path / "log1").start()
    for i, x in enumerate(xs):
        assert post(server.url, x, i).status_code == 200
    server.kill()
    wal = state / "streams" / "search" / "wal.log"
    intact = wal.stat().st_size
    with open(wal, "ab") as fh:  # a record torn mid-write: a plausible header, half a body
        fh.write((5000).to_bytes(4, "little") + b"\x00\x01\x02\x03" + b"\xab" * 1234)

    log2 = tmp_path / "log2"
    again = server_factory(args, log2).start()
    assert "dropped a torn or corrupt tail of 1242 bytes" in log2.read_text()
    assert wal.stat().st_size == intact
    assert httpx.get(f"{again.url}/v1/streams").json()["streams"][0]["count"] == 3 * BATCH
    assert post(again.url, xs[0], 3).status_code == 200  # the log takes new records
    again.kill()

    restored = recovered(serve_ref, state).open()
    reference_run = twin(serve_ref, [*xs, xs[0]])
    assert_same_state(restored._streams["search"].monitor, reference_run._streams["search"].monitor)
    restored.close()
