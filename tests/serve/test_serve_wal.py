"""The write-ahead log and checkpoints: framing, torn tails, corruption, atomic checkpoints."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embdrift.errors import StateFormatError
from embdrift.serve.batch import Batch, OutcomeEvents, record_from_bytes
from embdrift.serve.wal import Recovered, WriteAheadLog, read_checkpoint, write_checkpoint


def _reopen(folder, after: int = 0) -> Recovered:
    """Open a log like a restarting service does, then close it again."""
    wal = WriteAheadLog(folder)
    try:
        return wal.open(after=after)
    finally:
        wal.close()


def _payloads(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [rng.bytes(int(rng.integers(1, 300))) for _ in range(n)]


def test_records_round_trip_in_order(tmp_path) -> None:
    wal = WriteAheadLog(tmp_path / "s")
    assert wal.open().records == []
    payloads = _payloads(20)
    assert [wal.append(p) for p in payloads] == list(range(1, 21))
    wal.close()
    again = WriteAheadLog(tmp_path / "s")
    rec = again.open()
    assert [p for _, p in rec.records] == payloads
    assert rec.truncated_bytes == 0 and again.last_seq == 20
    assert again.append(b"next") == 21
    again.close()


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(min_value=0, max_value=10_000), seed=st.integers(0, 1000))
def test_any_torn_tail_keeps_exactly_the_complete_records(tmp_path_factory, cut, seed) -> None:
    folder = tmp_path_factory.mktemp("wal")
    wal = WriteAheadLog(folder)
    wal.open()
    payloads = _payloads(12, seed)
    ends = []
    for p in payloads:
        wal.append(p)
        ends.append(wal.size_bytes())
    wal.close()
    cut = min(cut, ends[-1])
    with open(wal.path, "r+b") as fh:  # a crash mid-write leaves a prefix of the bytes
        fh.truncate(cut)
    complete = sum(e <= cut for e in ends)
    again = WriteAheadLog(folder)
    rec = again.open()
    assert [p for _, p in rec.records] == payloads[:complete]
    boundary = ends[complete - 1] if complete else 0
    assert rec.truncated_bytes == cut - boundary
    assert again.size_bytes() == boundary  # the torn bytes are gone from the file
    assert again.append(b"after") == complete + 1
    again.close()
    assert [p for _, p in _reopen(folder).records][-1] == b"after"


def test_flipped_bit_in_the_last_record_is_truncated_and_logged(tmp_path, caplog) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.open()
    payloads = _payloads(5)
    for p in payloads:
        wal.append(p)
    wal.close()
    data = bytearray(wal.path.read_bytes())
    data[-3] ^= 0x40
    wal.path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="embdrift.serve"):
        rec = _reopen(tmp_path)
    assert [p for _, p in rec.records] == payloads[:4]
    assert rec.truncated_bytes == len(payloads[4]) + 16
    assert "torn or corrupt tail" in caplog.text


def test_garbage_appended_after_records_is_dropped(tmp_path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.open()
    wal.append(b"one")
    wal.append(b"two")
    wal.close()
    with open(wal.path, "ab") as fh:
        fh.write(b"\xff" * 5 + b"\x00" * 100)  # a huge length, then zeros
    rec = _reopen(tmp_path)
    assert [p for _, p in rec.records] == [b"one", b"two"]
    assert rec.truncated_bytes == 105


def test_checkpoint_skips_covered_records_and_truncates(tmp_path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.open()
    for p in _payloads(3):
        wal.append(p)
    wal.checkpoint(b"state-at-3")
    assert wal.size_bytes() == 0
    wal.append(b"four")
    wal.close()
    assert read_checkpoint(wal.checkpoint_path) == (3, b"state-at-3")
    rec = _reopen(tmp_path, 3)
    assert rec.records == [(4, b"four")]


def test_crash_between_checkpoint_and_truncation_replays_nothing_twice(tmp_path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.open()
    for p in (b"a", b"b", b"c"):
        wal.append(p)
    write_checkpoint(wal.checkpoint_path, 2, b"state-at-2")  # log not truncated yet
    wal.close()
    seq, _ = read_checkpoint(wal.checkpoint_path)
    rec = _reopen(tmp_path, seq)
    assert rec.records == [(3, b"c")]


def test_log_newer_than_its_checkpoint_refuses_to_load(tmp_path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.open()
    for p in (b"a", b"b", b"c"):
        wal.append(p)
    wal.checkpoint(b"state-at-3")  # log now holds nothing
    for p in (b"d", b"e"):
        wal.append(p)  # records 4 and 5
    wal.close()
    # an older checkpoint (say restored from a backup) would silently skip record 3
    with pytest.raises(StateFormatError, match="jumps from record 2 to 4"):
        _reopen(tmp_path, 2)
    assert [s for s, _ in _reopen(tmp_path, 3).records] == [4, 5]


def test_damaged_checkpoint_is_an_error_not_silently_ignored(tmp_path) -> None:
    path = tmp_path / "checkpoint.bin"
    write_checkpoint(path, 7, b"payload" * 10)
    assert read_checkpoint(path) == (7, b"payload" * 10)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(StateFormatError, match="damaged"):
        read_checkpoint(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(StateFormatError, match="not an embdrift checkpoint"):
        read_checkpoint(path)
    assert not (tmp_path / "checkpoint.bin.tmp").exists()
    assert read_checkpoint(tmp_path / "none.bin") is None


def test_records_carry_exactly_the_batch() -> None:
    rng = np.random.default_rng(0)
    batch = Batch(
        rng.normal(size=(7, 5)).astype(np.float32),
        np.array([f"id{i}" for i in range(7)]),
        np.arange(7, dtype=np.int64) * 10**9,
        {"click": np.array([1.0, np.nan, 0.0, 1.0, 1.0, 0.0, 0.25])},
    )
    back = record_from_bytes(batch.to_record())
    assert isinstance(back, Batch)
    np.testing.assert_array_equal(back.embeddings, batch.embeddings)
    np.testing.assert_array_equal(back.ids, batch.ids)
    np.testing.assert_array_equal(back.timestamps, batch.timestamps)
    np.testing.assert_array_equal(back.outcomes["click"], batch.outcomes["click"])
    events = OutcomeEvents({"ok": np.array([1.0, 0.0])}, None)
    again = record_from_bytes(events.to_record())
    assert isinstance(again, OutcomeEvents) and again.n_events == 2
    assert back.to_record() == batch.to_record()
