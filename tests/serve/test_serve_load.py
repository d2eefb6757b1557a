"""A real ``embdrift serve`` under concurrent clients: zero errors, bounded memory, and
back-pressure (refusals with Retry-After, nothing refused written, nothing accepted lost).

Speed is measured in ``benchmarks/load.py``; these tests assert only counts and memory.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from serve_support import CALIBRATION, DIM, npy_bytes

NPY = {"Content-Type": "application/x-npy"}
BATCH = 500  # rows per request: 500 x 32 float32 = 62.6 KiB per body
WINDOW = 1000


def _args(ref_path: Path, state: Path, *extra: str) -> list[str]:
    return [
        "-r", str(ref_path),
        "--window", str(WINDOW),
        "--calibration", str(CALIBRATION),
        "--reservoir-size", "200",
        "--state-dir", str(state),
        "--log-level", "warning",
        "--no-explain",
        *extra,
    ]  # fmt: skip


def _rss(pid: int) -> int:
    """Resident bytes of process ``pid`` (VmRSS of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def _bodies(n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [npy_bytes(rng.normal(size=(BATCH, DIM)).astype(np.float32)) for _ in range(n)]


class _Clients:
    """``n`` threads posting ``bodies`` round-robin to ``streams`` until stopped; every answer
    tallied by status (transport errors by exception type)."""

    def __init__(self, url: str, bodies: list[bytes], streams: list[str], n: int) -> None:
        self.url, self.bodies, self.streams = url, bodies, streams
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()  # stream -> rows of 200 answers
        self.batches = 0
        self.without_retry_after = 0
        self.threads = [threading.Thread(target=self._run, args=(k,)) for k in range(n)]

    def _run(self, k: int) -> None:
        i = k
        with httpx.Client(timeout=120) as client:
            while not self.stop.is_set():
                stream = self.streams[i % len(self.streams)]
                body = self.bodies[i % len(self.bodies)]
                i += 1
                try:
                    r = client.post(
                        f"{self.url}/v1/streams/{stream}/embeddings", content=body, headers=NPY
                    )
                except httpx.TransportError as exc:
                    with self.lock:
                        self.statuses[type(exc).__name__] += 1
                    continue
                with self.lock:
                    self.statuses[str(r.status_code)] += 1
                    if r.status_code == 200:
                        self.accepted[stream] += r.json()["accepted"]
                        self.batches += 1
                    elif (
                        r.status_code in (429, 503)
                        and not r.headers.get("retry-after", "").isdigit()
                    ):
                        self.without_retry_after += 1

    def __enter__(self) -> _Clients:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)


def _held(url: str) -> dict[str, int]:
    streams = httpx.get(f"{url}/v1/streams", timeout=30).json()["streams"]
    return {s["stream"]: s["count"] for s in streams}


def _counter(url: str, name: str, labels: dict[str, str]) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


def test_concurrent_clients_get_no_errors_and_memory_stays_flat(
    server_factory, serve_ref_path, tmp_path
) -> None:
    """4 clients on 2 streams: every answer 200, all rows held, and over the 200 batches that
    follow a warm-up of 100 the server's RSS grows by less than the bytes of 100 batches
    (6.3 MiB; a server that kept every batch would grow by at least twice that)."""
    server = server_factory(_args(serve_ref_path, tmp_path / "state"), tmp_path / "log").start()
    assert server.proc is not None
    pid = server.proc.pid
    bodies = _bodies(16, seed=0)
    warm_up, measured = 100, 200
    rss: list[int] = []  # sampled after the warm-up
    with _Clients(server.url, bodies, ["a", "b"], 4) as clients:
        deadline = time.monotonic() + 60
        while clients.batches < warm_up + measured and time.monotonic() < deadline:
            if clients.batches >= warm_up:
                rss.append(_rss(pid))
            time.sleep(0.05)
        rss.append(_rss(pid))
    assert set(clients.statuses) == {"200"}, clients.statuses
    assert clients.batches >= warm_up + measured, "too slow: the 60 s deadline passed"
    assert _held(server.url) == dict(clients.accepted)
    bound = 100 * len(bodies[0])
    growth = max(rss) - rss[0]
    assert growth < bound, (
        f"RSS grew {growth / 2**20:.1f} MiB over {measured} batches of"
        f" {len(bodies[0]) / 2**10:.0f} KiB (bound {bound / 2**20:.1f} MiB)"
    )


def test_saturation_is_refused_with_retry_after_and_nothing_refused_is_written(
    server_factory, serve_ref_path, tmp_path
) -> None:
    """``--max-inflight 1`` and 12 clients: some answers are 503 with Retry-After, none is
    another 5xx or a transport error, and the rows held (also after kill -9 and a restart,
    i.e. what the write-ahead log holds) equal the rows of the 200 answers."""
    state = tmp_path / "state"
    args = _args(serve_ref_path, state, "--max-inflight", "1")
    server = server_factory(args, tmp_path / "log").start()
    bodies = _bodies(8, seed=1)
    with _Clients(server.url, bodies, ["a", "b", "c"], 12) as clients:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.2)
            with clients.lock:
                if clients.statuses["200"] >= 20 and clients.statuses["503"] >= 20:
                    break
    statuses = clients.statuses
    assert set(statuses) <= {"200", "429", "503"}, statuses
    assert statuses["200"] >= 20 and statuses["503"] >= 20, statuses
    assert clients.without_retry_after == 0
    held = _held(server.url)
    assert held == dict(clients.accepted)
    refused = statuses["429"] + statuses["503"]
    assert _counter(server.url, "embdrift_rejected_batches_total", {"reason": "overloaded"}) == (
        refused
    )
    batches = sum(
        _counter(server.url, "embdrift_ingested_batches_total", {"stream": s}) for s in held
    )
    assert batches == clients.batches
    server.kill()
    again = server_factory(args, tmp_path / "log2").start()
    assert _held(again.url) == held


def test_the_arena_cap_defers_to_the_environment(monkeypatch) -> None:
    from embdrift.serve.process import cap_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cap_malloc_arenas() is False  # the user's setting wins
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert isinstance(cap_malloc_arenas(), bool)
