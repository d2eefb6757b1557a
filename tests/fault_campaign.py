"""Seeded ``kill -9`` campaigns against a REAL ``embdrift serve`` (shared by
``tests/serve/test_serve_faults.py`` and ``benchmarks/faults.py``).

One client posts a known sequence of batches (each a distinct seeded array, of a seeded
number of rows) to stream ``search`` of a server that checkpoints every few records. At each
*kill point* the client has a seeded number of batches acknowledged, then posts one more and,
after a seeded delay, the server gets SIGKILL (the delay is ``u`` times the median latency of
the requests acknowledged so far, ``u`` seeded uniform in ``[0, delay_factor]``, so the kills
spread over a request's life however loaded the machine is): the kill lands after the answer (idle),
while the request is in flight before its record is on disk, after the record is on disk but
before the answer, or during the checkpoint that the record triggered. The state folder is
then inspected (a checkpoint temporary file left behind, log records already covered by the
checkpoint), recovered in this process from a *copy* (so the server's own restart sees the
folder as the crash left it) and compared with the uninterrupted twin: a
:class:`StreamRegistry` fed, in this process and without a log, exactly the batches that were
acknowledged, plus the in-flight batch if the recovered count shows that it was logged. An
in-flight batch that was not logged is posted again by the client (it was never
acknowledged: the retry a real client makes). The server is restarted on the folder and the
stream goes on. At the end, more batches are posted, the server stops cleanly, and the final
state is compared with the twin once more.

Compared exactly (byte for byte): row counts, random-feature sums, moments, reservoirs (their
keys come from a seeded PCG64 whose state is checkpointed); the KLL quantile sketches draw
their compaction coin flips from an unseeded generator, so they are compared on ranks, within
twice the stated rank error ``rank_error(k)``.
"""

from __future__ import annotations

import resource
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from embdrift import Reference
from embdrift.serve import MonitorSettings, StreamRegistry
from embdrift.serve.batch import Batch
from embdrift.serve.wal import read_checkpoint
from embdrift.stream import SketchSet, StreamMonitor, _codec, rank_error
from embdrift.synthetic import World
from serve_support import CALIBRATION, WINDOW, Server, npy_bytes

__all__ = [
    "CampaignReport",
    "KillPoint",
    "assert_same_state",
    "assert_same_windows",
    "batch_maker",
    "cli_settings",
    "count",
    "limit_file_size",
    "log_records",
    "log_seqs",
    "post",
    "run_campaign",
    "serve_cmd",
    "server_args",
    "twin_of",
]

STREAM = "search"


def server_args(ref_path: Path, state: Path, *extra: str) -> list[str]:
    return [
        "-r", f"{STREAM}={ref_path}",
        "--window", str(WINDOW),
        "--calibration", str(CALIBRATION),
        "--reservoir-size", "200",
        "--state-dir", str(state),
        "--log-level", "warning",
        "--no-explain",  # explanations replay identically: tests/serve/test_serve_registry.py
        *extra,
    ]  # fmt: skip


def cli_settings() -> MonitorSettings:
    """What :func:`server_args` configures (the CLI defaults for everything else)."""
    return MonitorSettings(
        window=WINDOW, n_calibration=CALIBRATION, reservoir_size=200, explain=False
    )


def post(url: str, x: np.ndarray) -> httpx.Response:
    """Post ``x`` to :data:`STREAM` as an ``application/x-npy`` body."""
    return httpx.post(
        f"{url}/v1/streams/{STREAM}/embeddings",
        content=npy_bytes(x),
        headers={"Content-Type": "application/x-npy"},
        timeout=60,
    )


def count(url: str) -> int:
    """Rows counted by the server's first stream (0 without one)."""
    streams = httpx.get(f"{url}/v1/streams", timeout=30).json()["streams"]
    return int(streams[0]["count"]) if streams else 0


def serve_cmd(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``embdrift serve`` to completion (for servers that refuse to start)."""
    return subprocess.run(
        [sys.executable, "-m", "embdrift", "serve", *args, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def limit_file_size(limit: int) -> Callable[[], None]:
    """A ``preexec_fn`` that caps every file the child writes at ``limit`` bytes (EFBIG)."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def twin_of(ref: Reference, xs: list[np.ndarray]) -> StreamRegistry:
    """The uninterrupted run over ``xs``, in process, without a log."""
    reg = StreamRegistry(references={STREAM: ref}, settings=cli_settings()).open()
    for x in xs:
        reg.ingest(STREAM, Batch(x))
    return reg


def batch_maker(world: World, seed: int) -> Callable[[int], np.ndarray]:
    """Batch ``k`` of the sequence: a distinct seeded array of 20 to 150 rows."""

    def make(k: int) -> np.ndarray:
        rng = np.random.default_rng([seed, k])
        n = int(rng.integers(20, 151))
        x, _ = world.sample(n, weights=np.ones(5), seed=int(rng.integers(2**31)))
        return x.astype(np.float32)

    return make


def log_records(path: Path) -> tuple[list[int], int]:
    """Sequence numbers of the intact leading records of a write-ahead log and the byte
    where they end, read without opening it the way a service does (which would truncate a
    torn tail)."""
    data = path.read_bytes() if path.exists() else b""
    out, pos = [], 0
    while pos + 16 <= len(data):
        length, crc = struct.unpack_from("<II", data, pos)
        body = data[pos + 8 : pos + 8 + length]
        if length < 8 or len(body) < length or zlib.crc32(body) != crc:
            break
        out.append(int(struct.unpack_from("<Q", body)[0]))
        pos += 8 + length
    return out, pos


def log_seqs(path: Path) -> list[int]:
    """Sequence numbers of the intact leading records of a write-ahead log."""
    return log_records(path)[0]


def _sketch_parts(monitor: StreamMonitor) -> dict[str, Any]:
    meta, arrays = _codec.decode(monitor.state_bytes(), "StreamMonitor")
    out: dict[str, Any] = {
        k: meta[k] for k in ("rows_seen", "window_index", "run", "alert", "pane_keys")
    }
    for key in sorted(arrays):
        out[key] = SketchSet.from_bytes(bytes(arrays[key]), basis=monitor.basis)
    return out


def assert_same_state(a: StreamMonitor, b: StreamMonitor) -> None:
    """Exact equality of everything but the KLL sketches, which agree within 2 rank errors.

    Counters, window index, alert run and pane keys are equal; per sketch set the row count,
    the random-feature sums, moments and reservoir (keys, ids, rows, and the PCG64 state in
    its bytes) are identical, serialised and as arrays. The KLL sketches of ``a`` and ``b``
    give the same ranks at ``a``'s quantiles within ``eps = 2 rank_error(k)``; when a sketch
    holds at least ``1 / eps`` rows (so its own rank resolution ``1 / n`` is within ``eps``),
    the ranks in ``b`` of ``a``'s quantiles of the grid also match the grid within ``eps``.
    """
    pa, pb = _sketch_parts(a), _sketch_parts(b)
    assert pa.keys() == pb.keys()
    for key in pa:
        if not isinstance(pa[key], SketchSet):
            assert pa[key] == pb[key], key
            continue
        x, y = pa[key], pb[key]
        assert x.count == y.count, (key, x.count, y.count)
        # byte for byte, except the KLL sketches (reservoir bytes include the PCG64 state)
        assert x.rff.to_bytes() == y.rff.to_bytes(), key
        assert x.moments.to_bytes() == y.moments.to_bytes(), key
        assert x.reservoir.to_bytes() == y.reservoir.to_bytes(), key
        np.testing.assert_array_equal(x.rff.feature_sum, y.rff.feature_sum, err_msg=key)
        np.testing.assert_array_equal(x.moments.mean, y.moments.mean, err_msg=key)
        np.testing.assert_array_equal(x.moments.covariance, y.moments.covariance, err_msg=key)
        np.testing.assert_array_equal(x.reservoir.keys, y.reservoir.keys, err_msg=key)
        np.testing.assert_array_equal(x.reservoir.ids, y.reservoir.ids, err_msg=key)
        np.testing.assert_array_equal(x.reservoir.rows, y.reservoir.rows, err_msg=key)
        assert x.quantiles.count == y.quantiles.count, key
        if x.count:
            eps = 2 * rank_error(x.quantile_k)
            grid = np.linspace(0.05, 0.95, 19)
            fine = x.quantiles.count * eps >= 1
            for qx, qy in zip(x.quantiles.projections, y.quantiles.projections, strict=True):
                # ranks in each sketch of the same points agree within both sketches' errors
                pts = np.unique(qx.quantiles(grid))  # few rows: quantiles repeat
                np.testing.assert_allclose(qy.cdf(pts), qx.cdf(pts), atol=eps, err_msg=key)
                if fine:  # ranks, in y, of x's quantiles agree with the grid
                    got = qy.cdf(qx.quantiles(grid))
                    np.testing.assert_allclose(got, grid, atol=eps, err_msg=key)


def assert_same_windows(a: StreamRegistry, b: StreamRegistry) -> None:
    """The closed windows of :data:`STREAM` in ``a`` and ``b``: same index, start, end, rows
    and example ids; the exact-sketch metrics equal within a relative 1e-9 (absolute 1e-12
    near 0, as ``pytest.approx(rel=1e-9)``)."""
    ha, hb = a.snapshot(STREAM).history, b.snapshot(STREAM).history
    assert [w.window.index for w in ha] == [w.window.index for w in hb]
    for wa, wb in zip(ha, hb, strict=True):
        ra, rb = wa.window.result, wb.window.result
        assert (wa.window.start, wa.window.end, ra.n_current) == (
            wb.window.start,
            wb.window.end,
            rb.n_current,
        )
        for name in ("mmd", "mean_shift", "spread_ratio", "frechet"):  # exact sketches
            va, vb = ra.metrics[name].value, rb.metrics[name].value
            assert va == vb or abs(va - vb) <= max(1e-9 * abs(vb), 1e-12), (name, va, vb)
        assert wa.window.example_ids == wb.window.example_ids  # exact reservoirs


@dataclass
class KillPoint:
    """One kill: where it landed and what recovery found."""

    index: int
    acked_before: int  # batches acknowledged in this round before the in-flight one
    rows: int  # rows of the in-flight batch
    delay: float  # seconds between sending it and SIGKILL
    answered: bool  # its 200 arrived before the kill (the kill landed idle)
    logged: bool  # the recovered state includes it
    record_seq: int  # the log sequence number it has (or would have had)
    checkpoint_seq: int  # sequence number of the checkpoint on disk after the kill
    checkpoint_tmp: bool  # a checkpoint temporary file was left (killed mid-checkpoint)
    stale_log: bool  # log records already covered by the checkpoint (rename done, no truncate)
    problems: list[str] = field(default_factory=list)

    @property
    def landed(self) -> str:
        if self.answered:
            return "after the answer (idle)"
        if not self.logged:
            return "in flight, before its record was on disk"
        if self.checkpoint_tmp:
            return "in flight, during the checkpoint write"
        if self.stale_log:
            return "in flight, after the checkpoint rename, before the log truncation"
        if self.checkpoint_seq == self.record_seq:
            return "in flight, after its checkpoint, before the answer"
        return "in flight, after its record was on disk, before the answer"


@dataclass
class CampaignReport:
    seed: int
    points: list[KillPoint]
    acknowledged: int  # batches answered 200
    committed: int  # batches in the twin: acknowledged + in-flight ones found logged
    recovered_batches: int  # batches in the final recovered state
    rows: int  # rows in the final recovered state
    lost: int  # acknowledged batches missing after a recovery
    duplicated: int  # batches counted twice after a recovery
    problems: list[str]
    seconds: float
    latencies: list[float]  # seconds, of the acknowledged requests before each kill

    @property
    def landings(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.points:
            out[p.landed] = out.get(p.landed, 0) + 1
        return out


def _post(url: str, x: np.ndarray, out: list[httpx.Response | BaseException]) -> None:
    try:
        out.append(post(url, x))
    except BaseException as exc:  # the kill drops the connection
        out.append(exc)


def _recover(ref: Reference, state: Path) -> StreamRegistry:
    return StreamRegistry(
        references={STREAM: ref}, settings=cli_settings(), state_dir=state, background=False
    ).open()


def run_campaign(
    ref: Reference,
    ref_path: Path,
    world: World,
    workdir: Path,
    *,
    seed: int,
    n_points: int,
    checkpoint_every: int = 2,
    delay_factor: float = 1.25,
    max_acked: int = 2,
    tail_batches: int = 3,
    server_cls: type[Server] = Server,
) -> CampaignReport:
    """Run ``n_points`` seeded kill points (see the module docstring) in ``workdir``.

    Each point acknowledges 0 to ``max_acked`` batches, then kills during (or just after)
    one more; ``tail_batches`` batches follow the last restart.
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    make = batch_maker(world, seed)
    state = workdir / "state"
    folder = state / "streams" / STREAM
    args = server_args(ref_path, state, "--checkpoint-every", str(checkpoint_every))
    twin = StreamRegistry(references={STREAM: ref}, settings=cli_settings()).open()
    twin_batches = 0
    next_new, retry = 0, None
    acknowledged = lost = duplicated = 0
    points: list[KillPoint] = []
    problems: list[str] = []
    latencies: list[float] = [0.1]  # seconds; a guess until the first acknowledged request

    def take() -> tuple[int, np.ndarray]:
        nonlocal next_new, retry
        if retry is not None:
            k, retry = retry, None
        else:
            k, next_new = next_new, next_new + 1
        return k, make(k)

    def commit(x: np.ndarray) -> None:
        nonlocal twin_batches
        twin.ingest(STREAM, Batch(x))
        twin_batches += 1

    server = server_cls(args, workdir / "server.log").start()
    for index in range(n_points):
        acked_before = int(rng.integers(0, max_acked + 1))
        for _ in range(acked_before):
            _, x = take()
            t_post = time.perf_counter()
            r = post(server.url, x)
            latencies.append(time.perf_counter() - t_post)
            if r.status_code != 200:
                problems.append(f"point {index}: a normal post answered {r.status_code}")
            acknowledged += 1
            commit(x)
        k, x = take()
        before_seq = max(log_seqs(folder / "wal.log") + [_ckpt_seq(folder)])
        delay = float(rng.uniform(0.0, delay_factor)) * float(np.median(latencies))
        out: list[httpx.Response | BaseException] = []
        thread = threading.Thread(target=_post, args=(server.url, x, out))
        thread.start()
        time.sleep(delay)
        server.kill()
        thread.join()
        answered = isinstance(out[0], httpx.Response) and out[0].status_code == 200
        acknowledged += answered
        point = KillPoint(
            index=index,
            acked_before=acked_before,
            rows=x.shape[0],
            delay=delay,
            answered=answered,
            logged=False,
            record_seq=before_seq + 1,
            checkpoint_seq=_ckpt_seq(folder),
            checkpoint_tmp=(folder / "checkpoint.bin.tmp").exists(),
            stale_log=any(s <= _ckpt_seq(folder) for s in log_seqs(folder / "wal.log")),
        )
        copy = workdir / f"copy-{index}"
        shutil.copytree(state, copy)
        restored = _recover(ref, copy)
        delta = restored.snapshot(STREAM).count - twin.snapshot(STREAM).count
        extra = restored.snapshot(STREAM).batches - twin_batches
        if (delta, extra) == (x.shape[0], 1):
            point.logged = True
            commit(x)
        elif (delta, extra) == (0, 0):
            if answered:
                lost += 1
                point.problems.append("an acknowledged batch is missing after recovery")
            retry = k  # never acknowledged: the client posts it again
        else:
            duplicated += int(extra > 1)
            point.problems.append(
                f"recovered {delta} rows / {extra} batches more than the acknowledged prefix;"
                f" the in-flight batch had {x.shape[0]} rows"
            )
        try:
            assert_same_state(restored._streams[STREAM].monitor, twin._streams[STREAM].monitor)
            assert_same_windows(restored, twin)
        except AssertionError as exc:
            point.problems.append(f"recovered state differs from the twin: {exc}")
        restored.close()
        shutil.rmtree(copy)
        server = server_cls(args, workdir / "server.log").start()
        listing = httpx.get(f"{server.url}/v1/streams", timeout=30).json()["streams"][0]
        if listing["count"] != twin.snapshot(STREAM).count:
            point.problems.append(
                f"the restarted server counts {listing['count']} rows, the twin"
                f" {twin.snapshot(STREAM).count}"
            )
        if point.checkpoint_tmp and (folder / "checkpoint.bin.tmp").exists():
            point.problems.append("the restart left the checkpoint temporary file in place")
        problems += [f"point {index}: {p}" for p in point.problems]
        points.append(point)
    for _ in range(tail_batches):  # the stream goes on after the last restart
        _, x = take()
        r = post(server.url, x)
        if r.status_code != 200:
            problems.append(f"after the campaign a post answered {r.status_code}")
        acknowledged += 1
        commit(x)
    server.stop()
    final = _recover(ref, state)
    rows = final.snapshot(STREAM).count
    batches = final.snapshot(STREAM).batches
    try:
        assert_same_state(final._streams[STREAM].monitor, twin._streams[STREAM].monitor)
        assert_same_windows(final, twin)
    except AssertionError as exc:
        problems.append(f"final state differs from the twin: {exc}")
    if batches != twin_batches:
        problems.append(f"final state has {batches} batches, the twin {twin_batches}")
    final.close()
    twin.close()
    return CampaignReport(
        seed=seed,
        points=points,
        acknowledged=acknowledged,
        committed=twin_batches,
        recovered_batches=batches,
        rows=rows,
        lost=lost,
        duplicated=duplicated,
        problems=problems,
        seconds=time.perf_counter() - t0,
        latencies=latencies[1:],
    )


def _ckpt_seq(folder: Path) -> int:
    found = read_checkpoint(folder / "checkpoint.bin")
    return 0 if found is None else found[0]
