"""Faults against a REAL ``embdrift serve``: seeded ``kill -9`` at random points of ingest and
checkpointing, a crash during a checkpoint write, a damaged log, a full disk, a file size
limit, an unusable state folder and a failing DuckDB store.

Every failure here is produced for real, without mocks: SIGKILL, a byte flipped in the file,
``wal.log`` pointing at ``/dev/full`` (every write fails with ENOSPC), ``RLIMIT_FSIZE`` set in
the server process (writes past the limit fail with EFBIG; Python ignores SIGXFSZ), a file
where the state folder should be, and a folder where DuckDB's own log file should be (its
commits fail). See ``tests/fault_campaign.py`` for the kill campaign and its twin.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embdrift.errors import StateFormatError, StorageError
from embdrift.serve import StreamRegistry
from embdrift.serve.batch import Batch
from embdrift.serve.sink import StoreSink
from embdrift.serve.wal import WriteAheadLog, read_checkpoint, write_checkpoint
from embdrift.store import Store
from fault_campaign import (
    STREAM,
    CampaignReport,
    assert_same_state,
    batch_maker,
    cli_settings,
    count,
    limit_file_size,
    log_records,
    log_seqs,
    post,
    run_campaign,
    serve_cmd,
    server_args,
    twin_of,
)
from serve_support import WINDOW

pytestmark = pytest.mark.integration


def recovered(ref, state: Path, tmp_path: Path) -> StreamRegistry:
    """The state in ``state`` as a restart loads it, from a copy (the folder stays as is)."""
    copy = tmp_path / f"copy-{len(list(tmp_path.glob('copy-*')))}"
    shutil.copytree(state, copy)
    return StreamRegistry(
        references={STREAM: ref}, settings=cli_settings(), state_dir=copy, background=False
    ).open()


def test_seeded_kill_points_lose_nothing_and_count_nothing_twice(
    serve_ref, serve_ref_path, serve_world, tmp_path
):
    # Two campaigns of 10 seeded kill points each, on two servers at once (2 cores): each
    # point is a SIGKILL at a random moment of a request (or just after it), a recovery
    # compared with the uninterrupted twin, and a restart on the same folder.
    reports: dict[int, CampaignReport] = {}
    errors: list[BaseException] = []

    def campaign(seed: int) -> None:
        work = tmp_path / f"campaign-{seed}"
        work.mkdir()
        try:
            reports[seed] = run_campaign(
                serve_ref, serve_ref_path, serve_world, work, seed=seed, n_points=10
            )
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=campaign, args=(seed,)) for seed in (101, 202)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    points = [p for r in reports.values() for p in r.points]
    assert len(points) >= 20
    for r in reports.values():
        assert r.problems == []
        assert r.lost == 0 and r.duplicated == 0
        assert r.recovered_batches == r.committed >= r.acknowledged
        # every batch not in the final state was never acknowledged
        assert r.committed - r.acknowledged == sum(p.logged and not p.answered for p in r.points)
    # the kills landed both before and after records reached the disk
    assert any(not p.answered and not p.logged for p in points)
    assert any(not p.answered and p.logged for p in points)


def test_crash_during_a_checkpoint_write_never_loads_the_temporary_file(
    server_factory, serve_ref, serve_ref_path, serve_world, tmp_path
):
    state = tmp_path / "state"
    args = server_args(serve_ref_path, state, "--checkpoint-every", "2")
    make = batch_maker(serve_world, 5)
    xs = [make(k) for k in range(5)]
    server = server_factory(args, tmp_path / "log1").start()
    for x in xs:
        assert post(server.url, x).status_code == 200
    server.kill()
    folder = state / "streams" / STREAM
    seq, _ = read_checkpoint(folder / "checkpoint.bin")
    assert (seq, log_seqs(folder / "wal.log")) == (4, [5])
    # What a kill mid-way through write_checkpoint leaves: a temporary file beside the real
    # checkpoint. Here it is even a well-formed checkpoint of a later record with a payload
    # that is not a stream state; loading it would fail or change the state.
    write_checkpoint(folder / "checkpoint.bin.tmp", 6, b"not the state" * 1000)
    log2 = tmp_path / "log2"
    again = server_factory(args, log2).start()
    assert "left by a crash during a checkpoint write" in log2.read_text()
    assert not (folder / "checkpoint.bin.tmp").exists()
    assert count(again.url) == sum(x.shape[0] for x in xs)
    assert post(again.url, make(5)).status_code == 200  # the stream goes on
    again.stop()
    restored = recovered(serve_ref, state, tmp_path)
    reference_run = twin_of(serve_ref, [*xs, make(5)])
    assert_same_state(restored._streams[STREAM].monitor, reference_run._streams[STREAM].monitor)


def test_damage_in_the_middle_of_the_log_refuses_to_start(
    server_factory, serve_ref, serve_ref_path, serve_world, tmp_path
):
    state = tmp_path / "state"
    args = server_args(serve_ref_path, state, "--checkpoint-every", "1000")
    make = batch_maker(serve_world, 6)
    xs = [make(k) for k in range(4)]
    server = server_factory(args, tmp_path / "log1").start()
    for x in xs:
        assert post(server.url, x).status_code == 200
    server.kill()
    wal = state / "streams" / STREAM / "wal.log"
    data = bytearray(wal.read_bytes())
    starts = [0]
    for _ in range(4):
        starts.append(starts[-1] + 8 + int.from_bytes(data[starts[-1] : starts[-1] + 4], "little"))
    assert starts[-1] == len(data)
    damaged = 1  # the second of four records
    data[(starts[1] + starts[2]) // 2] ^= 0x10  # one flipped bit in an acknowledged record
    wal.write_bytes(bytes(data))

    done = serve_cmd(*args)
    assert done.returncode == 2, done.stderr
    message = " ".join(done.stderr.split())
    assert f"is damaged at byte {starts[damaged]}" in message
    assert f"{3 - damaged} intact records follow it" in message
    assert f"truncate -s {starts[damaged]} {wal}" in message
    assert "Traceback" not in done.stderr
    assert wal.read_bytes() == bytes(data)  # nothing changed on the way out

    # The operator's documented way out: cut the log at the damage, start again.
    subprocess.run(["truncate", "-s", str(starts[damaged]), str(wal)], check=True)
    again = server_factory(args, tmp_path / "log2").start()
    assert count(again.url) == sum(x.shape[0] for x in xs[:damaged])
    again.stop()


def test_file_size_limit_answers_507_and_applies_nothing(
    server_factory, serve_ref, serve_ref_path, serve_world, tmp_path
):
    # Records of 130 rows are ~16.7 kB, a checkpoint ~52 kB: with a 40 kB limit on every file
    # the server writes, the checkpoints fail (the log is kept whole), and the third record
    # fails half-way (EFBIG): the file is cut back to two records, the answer is 507.
    state = tmp_path / "state"
    args = server_args(serve_ref_path, state, "--checkpoint-every", "2")
    xs = [batch_maker(serve_world, 7)(k)[:20] for k in range(4)]
    big = [
        serve_world.sample(130, weights=np.ones(5), seed=70 + k)[0].astype(np.float32)
        for k in range(3)
    ]

    class Limited(server_factory):  # type: ignore[misc, valid-type]
        preexec_fn = staticmethod(limit_file_size(40_000))

    log1 = tmp_path / "log1"
    server = Limited(args, log1).start()
    assert post(server.url, big[0]).status_code == 200
    assert post(server.url, big[1]).status_code == 200  # its checkpoint fails: still durable
    r = post(server.url, big[2])
    assert r.status_code == 507
    body = r.json()
    assert body["error"] == "storage"
    assert "wal.log" in body["detail"] and "EFBIG" in body["detail"]
    assert "ulimit -f" in body["detail"]
    assert count(server.url) == 260  # the refused batch changed nothing
    # The torn record was cut back: the log takes later writes, the service stays ready.
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    assert post(server.url, xs[0]).status_code == 200  # a smaller record still fits
    assert count(server.url) == 280
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'embdrift_rejected_batches_total{reason="storage"} 1.0' in metrics
    server.kill()
    folder = state / "streams" / STREAM
    assert "checkpoint failed, log kept whole" in log1.read_text()
    assert not (folder / "checkpoint.bin.tmp").exists()
    seqs, end = log_records(folder / "wal.log")
    assert seqs == [1, 2, 3]  # no torn record between them ...
    assert end == (folder / "wal.log").stat().st_size  # ... nor after them

    log2 = tmp_path / "log2"
    again = server_factory(args, log2).start()  # no limit: the disk was "fixed"
    assert "torn or corrupt" not in log2.read_text()
    assert count(again.url) == 280
    assert post(again.url, big[2]).status_code == 200  # the client's retry
    again.stop()
    restored = recovered(serve_ref, state, tmp_path)
    reference_run = twin_of(serve_ref, [big[0], big[1], xs[0], big[2]])
    assert_same_state(restored._streams[STREAM].monitor, reference_run._streams[STREAM].monitor)


def test_full_disk_answers_507_names_the_problem_and_applies_nothing(
    server_factory, serve_ref_path, serve_world, tmp_path
):
    state = tmp_path / "state"
    folder = state / "streams" / STREAM
    folder.mkdir(parents=True)
    (folder / "wal.log").symlink_to("/dev/full")  # every write: ENOSPC
    server = server_factory(server_args(serve_ref_path, state), tmp_path / "log").start()
    x = batch_maker(serve_world, 8)(0)
    assert httpx.get(f"{server.url}/readyz").status_code == 200  # no write refused yet
    r = post(server.url, x)
    assert r.status_code == 507
    ready = httpx.get(f"{server.url}/readyz")  # the log cannot be cut back: not ready
    assert ready.status_code == 503 and ready.json()["error"] == "storage"
    assert STREAM in ready.json()["detail"] and "restart" in ready.json()["detail"]
    detail = r.json()["detail"]
    assert "No space left on device" in detail and "ENOSPC" in detail
    assert "Free space on the disk that holds --state-dir" in detail
    assert count(server.url) == 0
    # /dev/full cannot be cut back either: the log refuses every later write until a restart
    r = post(server.url, x)
    assert r.status_code == 507 and "restart the service" in r.json()["detail"]
    assert count(server.url) == 0
    server.kill()


def test_unusable_state_folder_refuses_to_start_with_exit_2(serve_ref_path, tmp_path):
    blocked = tmp_path / "state"
    blocked.write_text("a file where the state folder should be")
    done = serve_cmd(*server_args(serve_ref_path, blocked))
    assert done.returncode == 2
    message = " ".join(done.stderr.split())
    assert "Could not use the state folder" in message and str(blocked) in message
    assert "Move the file that stands where a folder should be" in message
    assert "Traceback" not in done.stderr

    state = tmp_path / "state2"
    (state / "streams").mkdir(parents=True)
    (state / "streams" / STREAM).write_text("not a folder")  # the stream's folder
    done = serve_cmd(*server_args(serve_ref_path, state))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "wal.log" in done.stderr


def test_failing_store_keeps_windows_and_backfills_them_after_a_crash(
    server_factory, serve_ref_path, serve_world, tmp_path
):
    state, db = tmp_path / "state", tmp_path / "drift.duckdb"
    # checkpoint after every record: the windows are in the checkpoint's history, not in a
    # log that a restart replays (a replay stores its windows again anyway)
    args = server_args(serve_ref_path, state, "--store", str(db), "--checkpoint-every", "1")
    rows = [
        serve_world.sample(WINDOW, weights=np.ones(5), seed=90 + k)[0].astype(np.float32)
        for k in range(3)
    ]
    with Store(db).connect():  # the schema, checkpointed: DuckDB has no log file open
        pass
    blocker = Path(f"{db}.wal")  # a folder where DuckDB's log goes: every commit fails
    log1 = tmp_path / "log1"
    server = server_factory(args, log1).start()
    blocker.mkdir()
    for x in rows[:2]:  # each closes one window; the store refuses both, the ingest holds
        assert post(server.url, x).status_code == 200
    assert "2 windows pending" in log1.read_text()
    server.kill()  # the pending windows are gone from memory, not from the history
    blocker.rmdir()
    log2 = tmp_path / "log2"
    again = server_factory(args, log2).start()
    assert "stored 2 windows missing from the store" in log2.read_text()
    assert post(again.url, rows[2]).status_code == 200
    again.stop()
    sources = [r.source for r in Store(db).results(stream=STREAM)]
    assert sources == [f"serve:{STREAM}:window:{i}" for i in range(3)]


def test_store_failure_is_retried_with_the_next_window(serve_ref, serve_world, tmp_path):
    db = tmp_path / "drift.duckdb"
    with Store(db).connect():
        pass
    sink = StoreSink(Store(db)).open()
    reg = StreamRegistry(
        references={STREAM: serve_ref}, settings=cli_settings(), on_window=sink
    ).open()
    rows = [
        serve_world.sample(WINDOW, weights=np.ones(5), seed=95 + k)[0].astype(np.float32)
        for k in range(3)
    ]
    blocker = Path(f"{db}.wal")
    blocker.mkdir()
    for x in rows[:2]:
        assert reg.ingest(STREAM, Batch(x)).windows_closed == 1
    assert (sink.pending, sink.failures) == (2, 2)
    blocker.rmdir()
    reg.ingest(STREAM, Batch(rows[2]))
    assert sink.pending == 0
    reg.close()
    sink.close()
    sources = [r.source for r in Store(db).results(stream=STREAM)]
    assert sources == [f"serve:{STREAM}:window:{i}" for i in range(3)]


def test_failed_checkpoint_removes_its_temporary_file_and_keeps_the_log(tmp_path):
    wal = WriteAheadLog(tmp_path / "s")
    wal.open()
    for p in (b"a", b"b"):
        wal.append(p)
    wal.checkpoint(b"state-at-2")
    wal.append(b"c")
    saved = wal.checkpoint_path.read_bytes()
    wal.checkpoint_path.unlink()
    wal.checkpoint_path.mkdir()  # the rename into place fails (EISDIR)
    with pytest.raises(StorageError, match="Could not write the checkpoint"):
        wal.checkpoint(b"state-at-3")
    assert not wal.checkpoint_path.with_name("checkpoint.bin.tmp").exists()
    assert log_seqs(wal.path) == [3]  # the log still holds the record
    wal.checkpoint_path.rmdir()
    wal.checkpoint_path.write_bytes(saved)
    wal.checkpoint(b"state-at-3")  # the disk is fixed: the next checkpoint works
    assert read_checkpoint(wal.checkpoint_path) == (3, b"state-at-3")
    assert log_seqs(wal.path) == []
    wal.close()


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_damaged_byte_is_detected_never_loaded(tmp_path_factory, data) -> None:
    # A flipped bit anywhere in records 1..n-1 (intact records follow it) refuses to load and
    # leaves the file as it is; in the last record it is indistinguishable from a torn write
    # and only that record is dropped. Never is a damaged record returned.
    folder = tmp_path_factory.mktemp("wal")
    rng = np.random.default_rng(data.draw(st.integers(0, 10_000)))
    payloads = [rng.bytes(int(rng.integers(1, 400))) for _ in range(6)]
    wal = WriteAheadLog(folder)
    wal.open()
    ends = []
    for p in payloads:
        wal.append(p)
        ends.append(wal.size_bytes())
    wal.close()
    raw = bytearray(wal.path.read_bytes())
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= 1 << data.draw(st.integers(0, 7))
    wal.path.write_bytes(bytes(raw))
    record = next(i for i, e in enumerate(ends) if pos < e)
    again = WriteAheadLog(folder)
    if record < len(payloads) - 1:
        with pytest.raises(StateFormatError, match="is damaged at byte") as info:
            again.open()
        start = ends[record - 1] if record else 0
        assert f"truncate -s {start} " in str(info.value)
        assert f"{len(payloads) - 1 - record} intact records follow it" in str(info.value)
        assert wal.path.read_bytes() == bytes(raw)
    else:
        rec = again.open()
        assert [p for _, p in rec.records] == payloads[:-1]
        assert wal.path.stat().st_size == ends[-2]
        again.close()


def test_failed_append_is_cut_back_so_later_records_follow_intact_ones(tmp_path) -> None:
    # In a child process with a 3000-byte file size limit: the record that crosses it fails
    # half-written (EFBIG); the file is cut back, and smaller records still follow.
    script = f"""
import resource
from embdrift.errors import StorageError
from embdrift.serve.wal import WriteAheadLog
resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))
wal = WriteAheadLog({str(tmp_path / "s")!r})
wal.open()
wal.append(b"a" * 1000)
wal.append(b"b" * 1000)
try:
    wal.append(b"c" * 1000)
except StorageError as exc:
    print("refused:", exc)
wal.append(b"d" * 100)
wal.close()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and "EFBIG" in done.stdout
    wal = WriteAheadLog(tmp_path / "s")
    rec = wal.open()
    assert [p for _, p in rec.records] == [b"a" * 1000, b"b" * 1000, b"d" * 100]
    assert [s for s, _ in rec.records] == [1, 2, 3] and rec.truncated_bytes == 0
    wal.close()
