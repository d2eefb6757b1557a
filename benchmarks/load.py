"""Load and back-pressure of ``embdrift serve``: sustained ingest, latency, memory, saturation.

A real ``embdrift serve`` process (127.0.0.1, a free port, a temporary state folder: write-ahead
log with fsync before every answer, checkpoints every 100 records; every other option at its
default: window 1000, 500 calibration draws, explanations on) monitors ``--streams`` streams
created on first ingest with one reference. The reference is fitted on real text when the
shared data are present (Debian package descriptions embedded with all-MiniLM-L6-v2, d = 384,
``$EMBDRIFT_DATA_DIR`` or ``../shared/data``), else on synthetic embeddings (``World``, d =
384); the section says which. Clients post the remaining rows as ``.npy`` batches.

Phase 1, **load**: ``--clients`` threads (each with its own keep-alive connection) post
batches round-robin over the streams for ``--duration`` seconds; a scraper reads ``/metrics``
once a second meanwhile. Recorded: embeddings/s and batches/s, client-side latency p50/p99
(request sent to durable answer), answers by status, scrape latency, and the server's resident
memory (``VmRSS`` of ``/proc/PID/status``) every 0.25 s, with the least-squares slope of RSS
against the batches accepted after the first quarter of the phase, in bytes per 1,000
batches. Before the phase starts, a warm-up posts to every stream until it has closed its
first window (which computes the stream's null calibration: seconds of CPU and transient
memory per stream); its duration is reported apart.

Phase 2, **saturation**: ``--saturation-clients`` threads (default 64, four times the default
in-flight limit of 16) post without pause and without honouring ``Retry-After`` for a third of
the duration. Recorded: answers by status, how many 429/503 carried ``Retry-After``, any other
5xx or transport error, and the RSS peak against the end of phase 1.

Finally the rows each stream holds (``GET /v1/streams``) are compared with the rows of the
200 answers: every accepted row counted, nothing refused written.

Run: ``python benchmarks/load.py`` (60 s + 20 s) or ``--quick`` (10 s + 5 s). Writes the
``load`` section of ``benchmarks/RELIABILITY.md``. The machine's load average is recorded: on
a shared machine the rates are lower bounds and the latencies upper bounds.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from embdrift import Reference
from embdrift.synthetic import World

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reliability import machine_line, write_section  # noqa: E402

__all__ = ["main", "run"]

_DATA = "debian_packages_minilm.npz"


@dataclass
class _Tally:
    """What the clients of one phase saw (appended under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    start: float = field(default_factory=time.perf_counter)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (done at, seconds)
    statuses: Counter[str] = field(default_factory=Counter)
    retry_after: Counter[str] = field(default_factory=Counter)
    accepted_rows: Counter[str] = field(default_factory=Counter)
    batches: int = 0


def _data_dir() -> Path:
    env = os.environ.get("EMBDRIFT_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def _embeddings(seed: int) -> tuple[np.ndarray, str]:
    """Rows (float32, d = 384), shuffled, and a description of where they come from."""
    path = _data_dir() / _DATA
    rng = np.random.default_rng(seed)
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            x = data["embeddings"].astype(np.float32)
        return x[rng.permutation(x.shape[0])], (
            f"real text: {x.shape[0]:,} Debian package descriptions embedded with"
            f" all-MiniLM-L6-v2 (d = {x.shape[1]}, {path.name})"
        )
    world = World.make(dim=384, n_clusters=8, rank=16, seed=seed)
    x, _ = world.sample(24_000, weights=np.ones(8), seed=seed + 1)
    return x.astype(np.float32), "synthetic: World(dim=384, 8 clusters) (shared data not found)"


def _npy(x: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, x)
    return buffer.getvalue()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss(pid: int) -> int:
    """Resident memory of process ``pid`` in bytes (``VmRSS`` of ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _start(args: list[str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "embdrift", "serve", *args, "--port", str(port)]
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not become ready in 120 s")


def _held(url: str) -> dict[str, int]:
    """Rows each stream holds (``GET /v1/streams``)."""
    streams = httpx.get(f"{url}/v1/streams", timeout=60).json()["streams"]
    return {s["stream"]: s["count"] for s in streams}


def _client(
    url: str,
    bodies: list[tuple[str, bytes, int]],
    start: int,
    stop: threading.Event,
    tally: _Tally,
) -> None:
    """Post ``bodies`` (stream, .npy body, rows) round-robin from ``start`` until ``stop``."""
    headers = {"Content-Type": "application/x-npy"}
    i = start
    with httpx.Client(timeout=120) as client:
        while not stop.is_set():
            stream, body, rows = bodies[i % len(bodies)]
            i += 1
            t0 = time.perf_counter()
            try:
                r = client.post(
                    f"{url}/v1/streams/{stream}/embeddings", content=body, headers=headers
                )
                status = str(r.status_code)
            except httpx.TransportError as exc:
                r, status = None, f"transport:{type(exc).__name__}"
            done = time.perf_counter()
            with tally.lock:
                tally.statuses[status] += 1
                if r is not None and r.status_code == 200:
                    at = done - tally.start
                    tally.latencies.append((at, done - t0))
                    tally.accepted_rows[stream] += rows
                    tally.batches += 1
                if r is not None and r.status_code in (429, 503):
                    has = "with" if r.headers.get("retry-after", "").isdigit() else "without"
                    tally.retry_after[f"{r.status_code} {has} Retry-After"] += 1


def _warm_up(url: str, bodies: list[tuple[str, bytes, int]], streams: list[str]) -> float:
    """Post to every stream (one thread each) until it closes its first window; seconds."""

    def feed(stream: str) -> None:
        mine = [b for b in bodies if b[0] == stream]
        with httpx.Client(timeout=600) as client:
            for _, body, _ in mine:
                r = client.post(
                    f"{url}/v1/streams/{stream}/embeddings",
                    content=body,
                    headers={"Content-Type": "application/x-npy"},
                )
                r.raise_for_status()
                if r.json()["windows_closed"]:
                    return
        raise RuntimeError(f"stream {stream} closed no window in {len(mine)} batches")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=feed, args=(s,)) for s in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def _phase(
    url: str,
    pid: int,
    bodies: list[tuple[str, bytes, int]],
    *,
    clients: int,
    duration: float,
    scrape: bool,
) -> tuple[_Tally, list[tuple[float, int, int]], list[float], int]:
    """Run ``clients`` for ``duration`` s; returns the tally, RSS samples (t, bytes, batches),
    scrape latencies and failed scrapes."""
    tally = _Tally()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_client, args=(url, bodies, k * 7919, stop, tally), daemon=True)
        for k in range(clients)
    ]
    samples: list[tuple[float, int, int]] = []
    scrapes: list[float] = []
    failed = 0
    t0 = tally.start = time.perf_counter()
    for t in threads:
        t.start()
    next_scrape = t0 + 1.0
    with httpx.Client(timeout=30) as scraper:
        while (now := time.perf_counter()) - t0 < duration:
            samples.append((now - t0, _rss(pid), tally.batches))
            if scrape and now >= next_scrape:
                next_scrape += 1.0
                s0 = time.perf_counter()
                try:
                    ok = scraper.get(f"{url}/metrics").status_code == 200
                except httpx.TransportError:
                    ok = False
                scrapes.append(time.perf_counter() - s0)
                failed += not ok
            time.sleep(0.25)
    stop.set()
    for t in threads:
        t.join(timeout=180)
    samples.append((time.perf_counter() - t0, _rss(pid), tally.batches))
    return tally, samples, scrapes, failed


def run(
    *,
    clients: int = 8,
    streams: int = 4,
    duration: float = 60.0,
    batch: int = 256,
    saturation_clients: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    """Both phases; returns the figures (see the module docstring)."""
    x, source = _embeddings(seed)
    n_ref = 4000
    ref_rows, pool = x[:n_ref], x[n_ref:]
    n_bodies = pool.shape[0] // batch
    names = [f"load-{k}" for k in range(streams)]
    bodies = [
        (names[i % streams], _npy(pool[i * batch : (i + 1) * batch]), batch)
        for i in range(n_bodies)
    ]
    out: dict[str, Any] = {"source": source, "batch": batch, "body_bytes": len(bodies[0][1])}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ref_path = Reference.fit(ref_rows, seed=seed).save(folder / "ref.npz")
        args = ["-r", str(ref_path), "--state-dir", str(folder / "state")]
        args += ["--log-level", "warning"]
        proc, url = _start(args, folder / "server.log")
        try:
            rss0 = _rss(proc.pid)
            out["warm_up_s"] = _warm_up(url, bodies, names)
            warm_held = _held(url)
            out["warm_up_rows"] = sum(warm_held.values())
            load, samples, scrapes, failed = _phase(
                url, proc.pid, bodies, clients=clients, duration=duration, scrape=True
            )
            sat, sat_samples, _, _ = _phase(
                url,
                proc.pid,
                bodies,
                clients=saturation_clients,
                duration=max(duration / 3, 5.0),
                scrape=False,
            )
            held = _held(url)
            log_tail = (folder / "server.log").read_text()[-2000:]
        finally:
            proc.terminate()
            proc.wait(timeout=120)
    t = np.array([s[0] for s in samples])
    rss = np.array([s[1] for s in samples], dtype=float)
    done = np.array([s[2] for s in samples], dtype=float)
    warm = t >= duration / 4
    slope = float(np.polyfit(done[warm], rss[warm], 1)[0]) * 1000 if warm.sum() > 2 else np.nan
    lat = np.array([x[1] for x in load.latencies])
    accepted = load.accepted_rows + sat.accepted_rows + Counter(warm_held)
    out.update(
        embeddings_per_s=sum(load.accepted_rows.values()) / duration,
        batches_per_s=load.batches / duration,
        p50_ms=1000 * float(np.percentile(lat, 50)) if lat.size else np.nan,
        p99_ms=1000 * float(np.percentile(lat, 99)) if lat.size else np.nan,
        statuses=dict(load.statuses),
        scrapes=len(scrapes),
        scrape_max_ms=1000 * max(scrapes, default=np.nan),
        scrape_failed=failed,
        rss_start_mb=rss0 / 2**20,
        rss_warm_mb=float(rss[warm][0]) / 2**20,
        rss_end_mb=float(rss[-1]) / 2**20,
        rss_max_mb=float(rss.max()) / 2**20,
        rss_slope_bytes_per_1000=slope,
        batches_after_warmup=int(done[-1] - done[warm][0]),
        sat_statuses=dict(sat.statuses),
        sat_retry_after=dict(sat.retry_after),
        sat_rss_max_mb=max(s[1] for s in sat_samples) / 2**20,
        sat_rss_end_mb=sat_samples[-1][1] / 2**20,
        held=held,
        accepted=dict(accepted),
        server_log_tail=log_tail if "Traceback" in log_tail else "",
    )
    return out


def _markdown(
    r: dict[str, Any],
    command: str,
    *,
    clients: int,
    streams: int,
    duration: float,
    saturation_clients: int,
) -> str:
    statuses = r["statuses"]
    sat = r["sat_statuses"]
    assert isinstance(statuses, dict) and isinstance(sat, dict)
    errors = {k: v for k, v in statuses.items() if k != "200"}
    other_5xx = {k: v for k, v in sat.items() if k.startswith("5") and k != "503"}
    transport = {k: v for k, v in sat.items() if k.startswith("transport")}
    held, accepted = r["held"], r["accepted"]
    if held == accepted:
        lost = "equal the rows of the 200 answers: nothing accepted lost, nothing refused written"
    else:
        lost = f"DIFFER from the rows of the 200 answers: held {held}, answered {accepted}"
    body_mb = float(r["body_bytes"]) / 2**20
    lines = [
        "## Load and back-pressure",
        "",
        machine_line(),
        "",
        f"Command: `{command}`",
        "",
        f"Server: `embdrift serve` defaults (window 1000, 500 calibration draws, explanations"
        f" on, `--max-inflight 16`), write-ahead log with fsync before every answer, checkpoint"
        f" every 100 records. Reference and batches: {r['source']}; 4,000 rows fit the"
        f" reference, the rest are posted as `.npy` batches of {r['batch']} rows"
        f" ({body_mb:.2f} MiB per body) to {streams} streams.",
        "",
        f"**Load** ({clients} clients, {duration:g} s, `/metrics` scraped every second):",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| warm-up (every stream closes its first window: its calibration) |"
        f" {r['warm_up_s']:.1f} s, {r['warm_up_rows']:,} rows |",
        f"| sustained ingest | {r['embeddings_per_s']:,.0f} embeddings/s,"
        f" {r['batches_per_s']:.1f} batches/s |",
        f"| latency (request sent to durable answer) | p50 {r['p50_ms']:.0f} ms,"
        f" p99 {r['p99_ms']:.0f} ms |",
        f"| answers by status | {statuses} |",
        f"| errors | {sum(errors.values())} {errors or ''} |",
        f"| `/metrics` scrapes during the load | {r['scrapes']}, slowest"
        f" {r['scrape_max_ms']:.0f} ms, {r['scrape_failed']} failed |",
        f"| server RSS | {r['rss_start_mb']:.0f} MiB idle, {r['rss_warm_mb']:.0f} MiB after"
        f" the first quarter, {r['rss_end_mb']:.0f} MiB at the end (peak"
        f" {r['rss_max_mb']:.0f}) |",
        "| RSS growth after the first quarter |"
        f" {r['rss_slope_bytes_per_1000'] / 2**20:+.2f} MiB per 1,000 batches"
        f" (least-squares slope over {r['batches_after_warmup']:,} batches;"
        f" one batch body is {body_mb:.2f} MiB) |",
        "",
        f"**Saturation** ({saturation_clients} clients posting without pause, ignoring"
        f" Retry-After, {max(duration / 3, 5.0):g} s):",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| answers by status | {sat} |",
        f"| refusals | {r['sat_retry_after']} |",
        f"| 5xx other than the deliberate 503 | {sum(other_5xx.values())} {other_5xx or ''} |",
        f"| transport errors | {sum(transport.values())} {transport or ''} |",
        f"| server RSS | peak {r['sat_rss_max_mb']:.0f} MiB, {r['sat_rss_end_mb']:.0f} MiB at"
        f" the end (phase 1: {r['rss_end_mb']:.0f} MiB at its end, peak"
        f" {r['rss_max_mb']:.0f}); requests in flight hold at most 16 bodies"
        f" ({16 * body_mb:.0f} MiB here) |",
        "",
        f"Rows held by the streams after both phases (`GET /v1/streams`) {lost}.",
        "",
        "The machine is shared (see the load average above): rates are lower bounds and"
        " latencies upper bounds of what an idle machine gives; the counts are exact.",
    ]
    if r["server_log_tail"]:
        tail = str(r["server_log_tail"])
        lines += ["", "Server log tail (a traceback was logged):", "", "```", tail, "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (phase 1)")
    parser.add_argument("--streams", type=int, default=4, help="streams posted to")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of phase 1")
    parser.add_argument("--batch", type=int, default=256, help="rows per batch")
    parser.add_argument("--saturation-clients", type=int, default=64, help="clients (phase 2)")
    parser.add_argument("--quick", action="store_true", help="10 s of load, 5 s of saturation")
    parser.add_argument("--no-write", action="store_true", help="print, do not write the file")
    args = parser.parse_args(argv)
    duration = 10.0 if args.quick else args.duration
    r = run(
        clients=args.clients,
        streams=args.streams,
        duration=duration,
        batch=args.batch,
        saturation_clients=args.saturation_clients,
    )
    command = "python benchmarks/load.py" + (" --quick" if args.quick else "")
    extra = [
        f"--{k} {v}"
        for k, v, d in (
            ("clients", args.clients, 8),
            ("streams", args.streams, 4),
            ("batch", args.batch, 256),
            ("saturation-clients", args.saturation_clients, 64),
        )
        if v != d
    ]
    if not args.quick and args.duration != 60.0:
        extra.append(f"--duration {args.duration:g}")
    command = " ".join([command, *extra])
    text = _markdown(
        r,
        command,
        clients=args.clients,
        streams=args.streams,
        duration=duration,
        saturation_clients=args.saturation_clients,
    )
    print(text)
    if not args.no_write:
        print(f"wrote {write_section('load', text)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
