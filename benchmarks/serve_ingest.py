"""``embdrift serve`` over HTTP: durable-ack latency, ingest throughput and recovery time.

A real ``embdrift serve`` (uvicorn subprocess on 127.0.0.1, default settings except the
window) with one d = 384 stream is fed batches of synthetic embeddings by one client, as
``.npy`` and as JSON bodies. Reported per body format: client-side latency per request
(p50 / p95, request sent to durable acknowledgement, i.e. after the fsync of the write-ahead
log; requests that close a window also include its test), and embeddings/s. Then the server is
killed with SIGKILL with ``checkpoint_every`` records still in the log, and the time until a
restarted server answers ``/readyz`` (checkpoint load + log replay) is measured, against the
start time of a server with an empty state folder.

Run: ``python benchmarks/serve_ingest.py`` (``--quick`` for a short run). The load average is
printed: on a shared machine the figures are upper bounds.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from embdrift import Reference
from embdrift.synthetic import World

__all__ = ["run"]

DIM = 384


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(args: list[str], port: int, log: Path) -> tuple[subprocess.Popen[bytes], float]:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "embdrift", "serve", *args, "--port", str(port)]
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    while True:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc, time.perf_counter() - t0
        except httpx.TransportError:
            pass
        time.sleep(0.05)


def _npy(x: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, x)
    return buffer.getvalue()


def run(quick: bool = False) -> dict[str, object]:
    n_batches = 20 if quick else 100
    batch = 500
    world = World.make(dim=DIM, n_clusters=8, rank=16, seed=0)
    ref_rows, _ = world.sample(4000, weights=np.ones(8), seed=1)
    out: dict[str, object] = {"load": f"{os.getloadavg()[0]:.1f}", "dim": DIM, "batch": batch}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ref_path = Reference.fit(ref_rows, seed=0).save(folder / "ref.npz")
        args = ["-r", f"s={ref_path}", "--window", "5000", "--state-dir", str(folder / "state")]
        args += ["--checkpoint-every", str(n_batches * 4), "--log-level", "warning"]
        port = _free_port()
        proc, cold = _start(args, port, folder / "log")
        url = f"http://127.0.0.1:{port}/v1/streams/s/embeddings"
        xs, _ = world.sample(n_batches * batch, weights=np.ones(8), seed=2)
        xs = xs.astype(np.float32)
        with httpx.Client(timeout=120) as client:
            for kind in ("npy", "json"):
                lat = []
                t_all = time.perf_counter()
                for i in range(n_batches):
                    x = xs[i * batch : (i + 1) * batch]
                    t0 = time.perf_counter()
                    if kind == "npy":
                        r = client.post(
                            url, content=_npy(x), headers={"Content-Type": "application/x-npy"}
                        )
                    else:
                        r = client.post(url, json={"embeddings": x.tolist()})
                    r.raise_for_status()
                    lat.append(time.perf_counter() - t0)
                total = time.perf_counter() - t_all
                out[f"{kind}_p50_ms"] = round(1000 * float(np.percentile(lat, 50)), 1)
                out[f"{kind}_p95_ms"] = round(1000 * float(np.percentile(lat, 95)), 1)
                out[f"{kind}_rows_per_s"] = round(n_batches * batch / total)
        log_bytes = (folder / "state" / "streams" / "s" / "wal.log").stat().st_size
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc, warm = _start(args, port, folder / "log")
        count = httpx.get(f"http://127.0.0.1:{port}/v1/streams").json()["streams"][0]["count"]
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        assert count == 2 * n_batches * batch, count
        out.update(
            cold_start_s=round(cold, 2),
            recovery_start_s=round(warm, 2),
            replayed_records=2 * n_batches,
            replayed_log_mb=round(log_bytes / 2**20, 1),
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="20 batches per body format instead of 100"
    )
    args = parser.parse_args(argv)
    print(json.dumps(run(quick=args.quick), indent=1))


if __name__ == "__main__":
    main()
