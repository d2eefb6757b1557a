"""Faults against a real ``embdrift serve``: seeded kill -9 campaign, damaged logs, full disks.

Writes the ``faults`` section of ``benchmarks/RELIABILITY.md`` (through ``_reliability.py``):

1. **Kill campaign** (``tests/fault_campaign.py``): ``--points`` seeded kill points. At each,
   one client has 0 to 2 batches acknowledged, posts one more and, after a seeded delay (a
   uniform fraction in ``[0, --delay-factor]`` of the median latency of the acknowledged
   requests so far), the server gets SIGKILL. The state folder is inspected (where the
   kill landed), recovered from a copy and compared with the uninterrupted twin (exactly,
   except KLL sketches within twice their rank error), then the server restarts on it and
   the stream goes on. Reported: kill points, where they landed, acknowledged batches,
   batches in the final state, lost and duplicated batches (both must be 0), and what
   became of the in-flight batch (logged or not; never acknowledged and lost).
2. **Damaged logs**: a torn last record, a flipped bit in the last record, a flipped bit in
   a middle record, 64 zeroed bytes in the middle, a damaged checkpoint, a stale checkpoint
   temporary file: what a restart does and how many acknowledged batches it keeps.
3. **Refused writes**: the log on ``/dev/full`` (ENOSPC), a 40 kB file size limit on the
   server (EFBIG, mid-record; checkpoints fail too), a file where the state folder should be,
   and a DuckDB store whose commits fail: answers, rows counted, what a restart recovers.

Run: ``python benchmarks/faults.py`` (``--points 30`` by default; ``--help`` for options).
The machine is shared: the timings are upper bounds, the counts are what matter.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from _reliability import machine_line, write_section  # noqa: E402

from embdrift import Reference  # noqa: E402
from embdrift.serve.wal import write_checkpoint  # noqa: E402
from embdrift.store import Store  # noqa: E402
from embdrift.synthetic import World  # noqa: E402
from fault_campaign import (  # noqa: E402
    STREAM,
    CampaignReport,
    batch_maker,
    count,
    limit_file_size,
    log_records,
    post,
    run_campaign,
    serve_cmd,
    server_args,
    twin_of,
)
from serve_support import DIM, WINDOW, Server  # noqa: E402

__all__ = ["main"]


def _world_and_reference(folder: Path) -> tuple[World, Reference, Path]:
    """The service tests' small world (d = 32, 5 clusters) and reference."""
    world = World.make(dim=DIM, n_clusters=5, rank=4, seed=7)
    x, _ = world.sample(1200, weights=np.array([1.0, 1.0, 1.0, 1.0, 0.0]), seed=1)
    ref = Reference.fit(x, seed=0, n_components=6)
    return world, ref, ref.save(folder / "ref.npz")


#: Temporary folder of the run, replaced by ``$TMP`` in the report's messages.
_TMP: list[str] = []


def _first_sentence(text: str) -> str:
    flat = " ".join(text.replace("error:", "").split())
    flat = flat.replace("WARNING: embdrift.serve: ", "")
    for tmp in _TMP:
        flat = flat.replace(tmp, "$TMP")
    return flat.split(". ")[0][:200]


# ---------------------------------------------------------------------------- damaged logs
def _damaged_log(ref_path: Path, world: World, work: Path) -> list[dict[str, Any]]:
    make = batch_maker(world, 31)
    xs = [make(k) for k in range(4)]
    rows = [x.shape[0] for x in xs]
    cases: list[tuple[str, Callable[[Path], None]]] = []

    def torn(folder: Path) -> None:
        with open(folder / "wal.log", "ab") as fh:
            fh.write((9000).to_bytes(4, "little") + b"\0\1\2\3" + b"\xab" * 777)

    def flip_last(folder: Path) -> None:
        data = bytearray((folder / "wal.log").read_bytes())
        data[-5] ^= 0x04
        (folder / "wal.log").write_bytes(bytes(data))

    def flip_middle(folder: Path) -> None:
        data = bytearray((folder / "wal.log").read_bytes())
        data[len(data) // 3] ^= 0x04
        (folder / "wal.log").write_bytes(bytes(data))

    def zero_block(folder: Path) -> None:
        data = bytearray((folder / "wal.log").read_bytes())
        mid = len(data) // 2
        data[mid : mid + 64] = bytes(64)
        (folder / "wal.log").write_bytes(bytes(data))

    def damaged_checkpoint(folder: Path) -> None:
        data = bytearray((folder / "checkpoint.bin").read_bytes())
        data[len(data) // 2] ^= 0x01
        (folder / "checkpoint.bin").write_bytes(bytes(data))

    def stale_tmp(folder: Path) -> None:
        write_checkpoint(folder / "checkpoint.bin.tmp", 99, b"garbage" * 500)

    cases = [
        ("torn last record (crash mid-write)", torn),
        ("flipped bit in the last record", flip_last),
        ("flipped bit in a middle record", flip_middle),
        ("64 zeroed bytes in the middle", zero_block),
        ("damaged checkpoint", damaged_checkpoint),
        ("checkpoint temporary file left by a crash", stale_tmp),
    ]
    out = []
    for i, (name, damage) in enumerate(cases):
        state = work / f"damaged-{i}"
        every = "2" if name.startswith(("damaged checkpoint", "checkpoint temporary")) else "1000"
        args = server_args(ref_path, state, "--checkpoint-every", every)
        server = Server(args, work / f"damaged-{i}.log").start()
        for x in xs:
            assert post(server.url, x).status_code == 200
        server.kill()
        damage(state / "streams" / STREAM)
        before = {p.name: p.read_bytes() for p in (state / "streams" / STREAM).iterdir()}
        done = _serve_until_ready(args, work / f"damaged-{i}-again.log")
        after = {p.name: p.read_bytes() for p in (state / "streams" / STREAM).iterdir()}
        kept = done["count"]
        out.append(
            {
                "case": name,
                "outcome": done["outcome"],
                "acked_batches": len(xs),
                "batches_kept": None if kept is None else _batches_for(kept, rows),
                "files_unchanged": before == after,
                "message": done["message"],
            }
        )
    return out


def _batches_for(count: int, rows: list[int]) -> int:
    total = 0
    for i, r in enumerate(rows):
        if total == count:
            return i
        total += r
    return len(rows) if total == count else -1


def _serve_until_ready(args: list[str], log: Path) -> dict[str, Any]:
    """Start a server: either it refuses (exit status, message) or it starts (row count,
    warning it logged)."""
    server = Server(args, log)
    try:
        server.start()
    except AssertionError:
        text = log.read_text()
        code = server.proc.returncode if server.proc is not None else None
        return {"outcome": f"refused to start (exit {code})", "count": None,
                "message": _first_sentence(text.split("error:", 1)[-1])}  # fmt: skip
    rows = count(server.url)
    server.stop()
    text = log.read_text()
    warning = next(
        (line for line in text.splitlines() if "dropped" in line or "removing" in line), ""
    )
    return {"outcome": "started", "count": rows, "message": _first_sentence(warning)}


# ---------------------------------------------------------------------------- refused writes
def _refused_writes(
    ref: Reference, ref_path: Path, world: World, work: Path
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    make = batch_maker(world, 41)
    big = [world.sample(130, weights=np.ones(5), seed=410 + k)[0].astype(np.float32)
           for k in range(3)]  # fmt: skip

    # 1. the log on /dev/full
    state = work / "full"
    (state / "streams" / STREAM).mkdir(parents=True)
    (state / "streams" / STREAM / "wal.log").symlink_to("/dev/full")
    server = Server(server_args(ref_path, state), work / "full.log").start()
    answers = [post(server.url, big[k]) for k in range(2)]
    out.append(
        {
            "case": "write-ahead log on /dev/full (ENOSPC)",
            "answers": " / ".join(str(r.status_code) for r in answers),
            "acknowledged": 0,
            "rows_counted": count(server.url),
            "after_restart": "n/a (the disk stays full)",
            "message": _first_sentence(answers[0].json()["detail"]),
        }
    )
    server.kill()

    # 2. a 40 kB file size limit: checkpoints fail, the third record fails mid-write
    state = work / "fsize"
    args = server_args(ref_path, state, "--checkpoint-every", "2")
    limited = Server(args, work / "fsize.log")
    limited.preexec_fn = limit_file_size(40_000)
    limited.start()
    small = make(0)[:20]
    answers = [post(limited.url, x) for x in (big[0], big[1], big[2], small)]
    acked = [x for x, r in zip((big[0], big[1], big[2], small), answers, strict=True)
             if r.status_code == 200]  # fmt: skip
    counted = count(limited.url)
    limited.kill()
    seqs, end = log_records(state / "streams" / STREAM / "wal.log")
    size = (state / "streams" / STREAM / "wal.log").stat().st_size
    again = Server(args, work / "fsize-again.log").start()
    recovered = count(again.url)
    again.stop()
    twin = twin_of(ref, acked)
    exact = recovered == twin.snapshot(STREAM).count
    out.append(
        {
            "case": "40 kB file size limit (EFBIG mid-record; checkpoints fail)",
            "answers": " / ".join(str(r.status_code) for r in answers),
            "acknowledged": len(acked),
            "rows_counted": counted,
            "after_restart": f"{recovered} rows ({'= acked' if exact else '!= acked'}); log"
            f" records {seqs}, {'no torn bytes' if end == size else 'TORN BYTES'}",
            "message": _first_sentence(answers[2].json()["detail"]),
        }
    )

    # 3. a file where the state folder should be
    blocked = work / "blocked"
    blocked.write_text("not a folder")
    done = serve_cmd(*server_args(ref_path, blocked), timeout=300)
    out.append(
        {
            "case": "a file where --state-dir should be",
            "answers": f"exit {done.returncode}",
            "acknowledged": 0,
            "rows_counted": 0,
            "after_restart": "n/a",
            "message": _first_sentence(done.stderr),
        }
    )

    # 4. a DuckDB store whose commits fail (a folder where its log file goes)
    state, db = work / "store-state", work / "drift.duckdb"
    with Store(db).connect():
        pass
    args = server_args(ref_path, state, "--store", str(db), "--checkpoint-every", "1")
    server = Server(args, work / "store.log").start()
    blocker = Path(f"{db}.wal")
    blocker.mkdir()
    windows = [world.sample(WINDOW, weights=np.ones(5), seed=420 + k)[0].astype(np.float32)
               for k in range(3)]  # fmt: skip
    answers = [post(server.url, x) for x in windows]
    server.kill()
    blocker.rmdir()
    again = Server(args, work / "store-again.log").start()
    again.stop()
    sources = [r.source for r in Store(db).results(stream=STREAM)]
    out.append(
        {
            "case": "DuckDB store refusing commits, then kill -9",
            "answers": " / ".join(str(r.status_code) for r in answers),
            "acknowledged": len(windows),
            "rows_counted": len(windows) * WINDOW,
            "after_restart": f"{len(sources)} of {len(windows)} windows stored once each"
            if sorted(set(sources)) == sorted(sources)
            else "DUPLICATE windows",
            "message": "windows kept pending, backfilled from the checkpointed history",
        }
    )
    return out


# ---------------------------------------------------------------------------- report
def _markdown(
    campaign: CampaignReport,
    damaged: list[dict[str, Any]],
    refused: list[dict[str, Any]],
    command: str,
    args: argparse.Namespace,
) -> str:
    pts = campaign.points
    lat = [1000 * x for x in campaign.latencies] or [float("nan")]
    logged_inflight = sum(not p.answered and p.logged for p in pts)
    unlogged_inflight = sum(not p.answered and not p.logged for p in pts)
    lines = [
        "## Faults and durability",
        "",
        machine_line(),
        "",
        f"Command: `{command}`",
        "",
        f"### Seeded kill -9 campaign (seed {args.seed}, checkpoint every"
        f" {args.checkpoint_every} records, kill delay U(0, {args.delay_factor}) x the median"
        f" latency of the acknowledged requests, {statistics.median(lat):.0f} ms at the end)",
        "",
        "| kill points | acknowledged batches | batches in final state | lost | duplicated |"
        " in flight, logged (kept) | in flight, not logged (re-posted) | problems | time (s) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {len(pts)} | {campaign.acknowledged} | {campaign.recovered_batches} |"
        f" {campaign.lost} | {campaign.duplicated} | {logged_inflight} | {unlogged_inflight} |"
        f" {len(campaign.problems)} | {campaign.seconds:.0f} |",
        "",
        "Where the kills landed (read from the state folder the crash left):",
        "",
        "| landed | kill points |",
        "| --- | ---: |",
    ]
    lines += [f"| {k} | {v} |" for k, v in sorted(campaign.landings.items())]
    lines += [
        "",
        "At every kill point the recovered state equals the uninterrupted run over the"
        " acknowledged batches, plus the in-flight batch when its record reached the disk"
        " before the kill (counts, random-feature sums, moments and reservoirs byte for byte;"
        " KLL sketches within twice their rank error); the restarted server counts the same"
        " rows, and the stream goes on. An in-flight batch was never acknowledged, so keeping"
        " it or not are both correct; a client that got no answer posts it again.",
    ]
    if campaign.problems:
        lines += ["", "Problems:", ""] + [f"- {p}" for p in campaign.problems]
    lines += [
        "",
        "### Damaged logs (4 acknowledged batches, then the damage, then a restart)",
        "",
        "| damage | restart | acknowledged batches kept | files unchanged | what it says |",
        "| --- | --- | ---: | --- | --- |",
    ]
    for d in damaged:
        kept = "-" if d["batches_kept"] is None else f"{d['batches_kept']} of {d['acked_batches']}"
        lines.append(
            f"| {d['case']} | {d['outcome']} | {kept} |"
            f" {'yes' if d['files_unchanged'] else 'no'} | {d['message']} |"
        )
    lines += [
        "",
        "### Refused writes",
        "",
        "| fault | answers | acknowledged | rows counted | after a restart | message |",
        "| --- | --- | ---: | ---: | --- | --- |",
    ]
    for r in refused:
        lines.append(
            f"| {r['case']} | {r['answers']} | {r['acknowledged']} | {r['rows_counted']} |"
            f" {r['after_restart']} | {r['message']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Faults against a real embdrift serve: seeded kill -9 campaign, damaged"
        " logs, refused writes. Writes the 'faults' section of benchmarks/RELIABILITY.md."
    )
    parser.add_argument("--points", type=int, default=30, help="kill points (default 30)")
    parser.add_argument("--seed", type=int, default=2026, help="campaign seed (default 2026)")
    parser.add_argument(
        "--checkpoint-every", type=int, default=2, help="records between checkpoints (2)"
    )
    parser.add_argument(
        "--delay-factor",
        type=float,
        default=1.25,
        help="kill delay = U(0, this) x the median acknowledged latency (1.25)",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print the section, do not write RELIABILITY.md"
    )
    args = parser.parse_args(argv)
    command = "python benchmarks/faults.py " + " ".join(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="embdrift-faults-") as tmp:
        work = Path(tmp)
        _TMP.append(str(work))
        world, ref, ref_path = _world_and_reference(work)
        t0 = time.perf_counter()
        (work / "campaign").mkdir()
        campaign = run_campaign(
            ref,
            ref_path,
            world,
            work / "campaign",
            seed=args.seed,
            n_points=args.points,
            checkpoint_every=args.checkpoint_every,
            delay_factor=args.delay_factor,
        )
        print(f"campaign: {campaign.seconds:.0f} s, problems: {campaign.problems}", flush=True)
        damaged = _damaged_log(ref_path, world, work)
        refused = _refused_writes(ref, ref_path, world, work)
        print(f"all cases: {time.perf_counter() - t0:.0f} s", flush=True)
        shutil.rmtree(work / "campaign", ignore_errors=True)
    text = _markdown(campaign, damaged, refused, command.strip(), args)
    print(text)
    if not args.no_write:
        print(f"wrote {write_section('faults', text)}")
    ok = campaign.lost == 0 and campaign.duplicated == 0 and not campaign.problems
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
