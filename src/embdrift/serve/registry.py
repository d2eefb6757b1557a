"""Named streams, each a :class:`~embdrift.stream.StreamMonitor` with its own lock and log.

:class:`StreamRegistry` is the service's state and works without HTTP: an application can
feed it in-process and expose it with :class:`~embdrift.serve.metrics.DriftCollector`.

For the live page and other readers, :meth:`StreamRegistry.snapshots` (and
:meth:`StreamRegistry.snapshot` for one stream) return :class:`StreamSnapshot` objects
(:mod:`embdrift.serve.snapshot`): a consistent copy, built under the stream's lock after
every change and published for readers who never take that lock, of the stream's name, row
count, alert state, latest window (its :class:`~embdrift.stream.WindowResult`, outcome
rates and new-cluster share), the recent history of windows (bounded, ``history`` windows,
default 500), and the latest window's reservoir rows projected on the reference's first two
standardised frozen principal components (with their ids and new-region labels) beside a
bounded sample of the reference projected the same way. ``StreamSnapshot.to_dict()`` is
JSON-ready. The app keeps the registry at ``app.state.registry``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import queue
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from embdrift.errors import (
    DimensionMismatchError,
    InvalidBodyError,
    OverloadedError,
    StateFormatError,
    StorageError,
    UnknownStreamError,
)
from embdrift.explain import Explanation, explain
from embdrift.reference import Reference
from embdrift.results import DriftResult
from embdrift.serve.batch import (
    MAX_OUTCOMES,
    Batch,
    OutcomeEvents,
    check_name,
    check_outcomes,
    record_from_bytes,
)
from embdrift.serve.snapshot import StreamSnapshot, WindowSummary
from embdrift.serve.wal import WriteAheadLog, read_checkpoint, storage_error
from embdrift.stream.monitor import StreamMonitor, WindowResult, check_time_order
from embdrift.stream.sketchset import SketchSet

__all__ = [
    "IngestReceipt",
    "MonitorSettings",
    "StreamRegistry",
    "StreamSnapshot",
    "WindowSummary",
]

log = logging.getLogger("embdrift.serve")

_RECEIVED = struct.Struct("<d")  # wall time a logged request was received
_CKPT_HEAD = struct.Struct("<IQ")  # JSON length, monitor state length
_STATE_VERSION = 1
#: Reference rows projected for the scatter's background.
_REFERENCE_POINTS = 500
#: Fewest reservoir rows explained (explain's k-NN graph needs 2 * n_neighbors = 30).
_MIN_EXPLAIN_ROWS = 40


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    """The options every stream's :class:`StreamMonitor` is built with (see its docstring).

    ``explain`` runs :func:`embdrift.explain.explain` on each closed window's reservoir sample
    (seeded, so the same rows always give the same answer) for the new-cluster share and the
    examples; the registry runs it off the ingest path (see ``StreamRegistry``).
    """

    window: int | dt.timedelta = 1000
    step: int | dt.timedelta | None = None
    alpha: float = 0.05
    consecutive: int = 1
    n_calibration: int = 500
    reservoir_size: int = 1000
    n_frequencies: int = 512
    n_projections: int = 16
    quantile_k: int = 200
    seed: int = 0
    explain: bool = True

    def build(self, reference: Reference) -> _CapturingMonitor:
        return _CapturingMonitor(
            reference,
            window=self.window,
            step=self.step,
            alpha=self.alpha,
            consecutive=self.consecutive,
            n_calibration=self.n_calibration,
            reservoir_size=self.reservoir_size,
            n_frequencies=self.n_frequencies,
            n_projections=self.n_projections,
            quantile_k=self.quantile_k,
            seed=self.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (durations as ``{"seconds": s}``); recorded in every checkpoint."""
        out = asdict(self)
        for key in ("window", "step"):
            if isinstance(out[key], dt.timedelta):
                out[key] = {"seconds": out[key].total_seconds()}
        return out


class _CapturingMonitor(StreamMonitor):
    """A StreamMonitor that keeps each tested window's reservoir sample (rows and ids) until
    the registry collects it with the window's result (``test`` is called once per window)."""

    def _reset(self) -> None:
        super()._reset()
        self._samples: list[tuple[np.ndarray, np.ndarray]] = []

    def test(self, sketches: SketchSet) -> DriftResult:
        result = super().test(sketches)
        self._samples.append((sketches.reservoir.rows, sketches.reservoir.ids))
        return result

    def take_samples(self) -> list[tuple[np.ndarray, np.ndarray]]:
        out, self._samples = self._samples, []
        return out


@dataclass(frozen=True, slots=True)
class IngestReceipt:
    """What an accepted request returns: the stream, rows accepted, the stream's row count
    after it, the windows it closed, and the log sequence number it was stored under."""

    stream: str
    accepted: int
    count: int
    windows_closed: int
    seq: int


class _Stream:
    """One stream's monitor and everything the service reports about it (guarded by lock)."""

    def __init__(
        self,
        name: str,
        reference: Reference,
        settings: MonitorSettings,
        *,
        history: int,
        wal: WriteAheadLog | None,
    ) -> None:
        self.name = name
        self.reference = reference
        self.settings = settings
        self.lock = threading.Lock()
        self.monitor = settings.build(reference)
        self.wal = wal
        self.batches = 0
        self.windows = 0
        self.drift_windows = 0
        self.last_ingest: float | None = None
        self.last_ts: int | None = None
        self.outcome_events: dict[str, int] = {}
        self.accumulator: dict[str, list[float]] = {}  # name -> [sum, n] since last close
        self.history: deque[WindowSummary] = deque(maxlen=history)
        self.explanation: dict[str, Any] | None = None
        self.points = np.empty((0, 2), dtype=np.float32)
        self.point_ids: tuple[str, ...] = ()
        self.point_labels: tuple[str, ...] = ()
        self.since_checkpoint = 0
        self.pending: tuple[int, np.ndarray, np.ndarray] | None = None  # window to explain
        ref_rows = reference.sample[:_REFERENCE_POINTS]
        self.reference_points = _project(reference, ref_rows)
        self.reference_points.flags.writeable = False
        self.published = self.publish()

    def publish(self) -> StreamSnapshot:
        """Build the readers' snapshot of the current state and publish it (the caller holds
        ``lock``); one attribute assignment, so a reader sees the old or the new snapshot,
        never a mixture. Costs O(history + points) copies, microseconds per change."""
        points = self.points.copy()
        points.flags.writeable = False
        snap = StreamSnapshot(
            name=self.name,
            reference_id=self.reference.reference_id,
            mode=self.monitor.mode,
            count=self.monitor.count,
            batches=self.batches,
            alert=self.monitor.alert,
            windows=self.windows,
            drift_windows=self.drift_windows,
            last_ingest=self.last_ingest,
            latest=self.history[-1] if self.history else None,
            history=tuple(self.history),
            outcome_events=dict(self.outcome_events),
            explanation=self.explanation,
            points=points,
            point_ids=self.point_ids,
            point_labels=self.point_labels,
            reference_points=self.reference_points,
        )
        self.published = snap
        return snap

    # ------------------------------------------------------------------ checkpoint payload
    def state_payload(self) -> bytes:
        meta = {
            "version": _STATE_VERSION,
            "name": self.name,
            "reference_id": self.reference.reference_id,
            "settings": self.settings.to_dict(),
            "batches": self.batches,
            "windows": self.windows,
            "drift_windows": self.drift_windows,
            "last_ingest": self.last_ingest,
            "last_ts": self.last_ts,
            "outcome_events": self.outcome_events,
            "accumulator": self.accumulator,
            "history": [w.to_dict() for w in self.history],
            "explanation": self.explanation,
            "point_ids": list(self.point_ids),
            "point_labels": list(self.point_labels),
        }
        text = json.dumps(meta, separators=(",", ":")).encode()
        mon = self.monitor.state_bytes()
        pts = np.ascontiguousarray(self.points, dtype="<f4").tobytes()
        return _CKPT_HEAD.pack(len(text), len(mon)) + text + mon + pts

    def load_payload(self, payload: bytes, *, folder: Path) -> None:
        try:
            size, mon_size = _CKPT_HEAD.unpack_from(payload)
            start = _CKPT_HEAD.size
            meta = json.loads(payload[start : start + size].decode())
            mon = payload[start + size : start + size + mon_size]
            pts = np.frombuffer(payload[start + size + mon_size :], dtype="<f4")
        except (struct.error, ValueError, UnicodeDecodeError) as exc:
            raise StateFormatError(
                f"The checkpoint in {str(folder)!r} does not decode ({exc})."
            ) from None
        if meta.get("version") != _STATE_VERSION:
            raise StateFormatError(
                f"The checkpoint in {str(folder)!r} has state version {meta.get('version')};"
                f" this embdrift reads version {_STATE_VERSION}."
            )
        if meta["reference_id"] != self.reference.reference_id:
            raise StateFormatError(
                f"Stream {self.name!r} was recorded against reference"
                f" {meta['reference_id']!r}, but the service now gives it reference"
                f" {self.reference.reference_id!r}. Pass the original reference for this"
                " stream, or move its state folder away to start it afresh."
            )
        if meta["settings"] != self.settings.to_dict():
            changed = {
                k: (v, self.settings.to_dict().get(k))
                for k, v in meta["settings"].items()
                if self.settings.to_dict().get(k) != v
            }
            raise StateFormatError(
                f"Stream {self.name!r} was recorded with other monitor settings; (recorded,"
                f" now) = {changed}. Restart with the recorded settings, or use a fresh"
                " --state-dir."
            )
        restored = _CapturingMonitor.from_state(self.reference, mon)
        assert isinstance(restored, _CapturingMonitor)
        self.monitor = restored
        self.batches = int(meta["batches"])
        self.windows = int(meta["windows"])
        self.drift_windows = int(meta["drift_windows"])
        self.last_ingest = meta["last_ingest"]
        self.last_ts = meta["last_ts"]
        self.outcome_events = {k: int(v) for k, v in meta["outcome_events"].items()}
        self.accumulator = {k: [float(s), float(n)] for k, (s, n) in meta["accumulator"].items()}
        self.history.extend(WindowSummary.from_dict(w) for w in meta["history"])
        self.explanation = meta["explanation"]
        self.point_ids = tuple(meta["point_ids"])
        self.point_labels = tuple(meta["point_labels"])
        self.points = pts.reshape(-1, 2).astype(np.float32)


def _project(reference: Reference, rows: np.ndarray) -> np.ndarray:
    """Rows on the reference's first two standardised frozen PCs (float32, (n, 2))."""
    if rows.shape[0] == 0:
        return np.empty((0, 2), dtype=np.float32)
    scores = reference.projection.standardize(rows)
    out = np.zeros((rows.shape[0], 2), dtype=np.float32)
    out[:, : min(2, scores.shape[1])] = scores[:, :2]
    return out


class StreamRegistry:
    """The service's streams: creation, ingest, outcome events, recovery and snapshots.

    Parameters
    ----------
    references : Mapping[str, Reference]
        Streams configured by name, each with its reference (created at :meth:`open`).
    default_reference : Reference, optional
        Reference of streams created on their first ingest; without it, an unknown stream
        name raises :class:`UnknownStreamError`.
    settings : MonitorSettings
        Monitor options shared by every stream.
    state_dir : path-like, optional
        Folder of the write-ahead logs and checkpoints (``<state_dir>/streams/<name>/``).
        Without it nothing survives a restart (in-process use, tests).
    on_window : callable, optional
        Called as ``on_window(stream_name, summary)`` for every closed window, also while
        replaying the log after a restart (so it must be idempotent; see
        :class:`~embdrift.serve.sink.StoreSink`).
    history : int
        Closed windows kept per stream for readers (default 500).
    max_streams : int
        Most streams (default 64); one more raises :class:`OverloadedError`.
    checkpoint_every : int
        Log records between checkpoints of a stream (default 100); the log replayed after a
        crash is at most that long.
    lock_timeout : float
        Seconds a request waits for a busy stream before :class:`OverloadedError` (default
        30). Readers never wait: they take the published snapshot.
    fsync : bool
        fsync every log record before acknowledging (default True).
    clock : callable
        Wall clock (unix seconds); injectable for tests.
    background : bool
        Explain closed windows in a worker thread (default True), so an ingest request that
        closes a window answers after the test, not after the explanation (which costs
        O(n²d) on the reservoir sample and the reference's test rows, often longer than
        the test). Only the latest window of each stream is explained; a newer window
        supersedes a pending one. False explains inline (deterministic timing, for tests).
        :meth:`drain` waits until the worker is idle.

    Examples
    --------
    >>> import numpy as np
    >>> from embdrift import Reference
    >>> rng = np.random.default_rng(0)
    >>> ref = Reference.fit(rng.normal(size=(600, 8)), n_components=3)
    >>> reg = StreamRegistry(
    ...     default_reference=ref,
    ...     settings=MonitorSettings(window=200, n_calibration=99, explain=False),
    ... ).open()
    >>> from embdrift.serve.batch import Batch
    >>> reg.ingest("search", Batch(rng.normal(size=(450, 8)).astype(np.float32)))
    IngestReceipt(stream='search', accepted=450, count=450, windows_closed=2, seq=0)
    >>> snap = reg.snapshot("search")
    >>> snap.windows, snap.latest.window.result.drifted
    (2, False)
    """

    def __init__(
        self,
        *,
        references: Mapping[str, Reference] | None = None,
        default_reference: Reference | None = None,
        settings: MonitorSettings | None = None,
        state_dir: str | Path | None = None,
        on_window: Callable[[str, WindowSummary], None] | None = None,
        history: int = 500,
        max_streams: int = 64,
        checkpoint_every: int = 100,
        lock_timeout: float = 30.0,
        fsync: bool = True,
        clock: Callable[[], float] = time.time,
        background: bool = True,
    ) -> None:
        self.references = {check_name(k): v for k, v in (references or {}).items()}
        self.default_reference = default_reference
        self.settings = settings or MonitorSettings()
        self.state_dir = None if state_dir is None else Path(state_dir)
        self.on_window = on_window
        self.history = history
        self.max_streams = max_streams
        self.checkpoint_every = checkpoint_every
        self.lock_timeout = lock_timeout
        self.fsync = fsync
        self.clock = clock
        self._streams: dict[str, _Stream] = {}
        self._lock = threading.Lock()
        self._rejected: dict[str, int] = {}
        self._rejected_lock = threading.Lock()
        self._storage_failures: dict[str, int] = {}
        self._opened = False
        self.background = background
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._worker: threading.Thread | None = None

    def __repr__(self) -> str:
        return (
            f"StreamRegistry(streams={sorted(self._streams)}, state_dir="
            f"{None if self.state_dir is None else str(self.state_dir)!r})"
        )

    # ------------------------------------------------------------------ lifecycle
    @property
    def ready(self) -> bool:
        return self._opened

    def open(self) -> StreamRegistry:
        """Create the configured streams and recover every stream found in ``state_dir``
        (checkpoint + log replay); returns self."""
        names = set(self.references)
        if self.state_dir is not None:
            root = self.state_dir / "streams"
            try:
                root.mkdir(parents=True, exist_ok=True)
                names |= {p.name for p in root.iterdir() if p.is_dir()}
            except OSError as exc:
                raise storage_error(exc, root, "use the state folder") from None
        if self.background and self.settings.explain and self._worker is None:
            self._worker = threading.Thread(
                target=self._explain_loop, name="embdrift-explain", daemon=True
            )
            self._worker.start()
        for name in sorted(names):
            with self._lock:
                self._create(name)
        self._opened = True
        return self

    def drain(self) -> None:
        """Wait until every pending explanation is done."""
        if self._worker is not None:
            self._queue.join()

    def close(self) -> None:
        """Finish pending explanations, checkpoint every stream and close the logs (a clean
        shutdown replays nothing)."""
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join()
            self._worker = None
        for stream in list(self._streams.values()):
            with stream.lock:
                if stream.wal is not None:
                    try:
                        stream.wal.checkpoint(stream.state_payload())
                    except StorageError as exc:  # the log still holds every record
                        self._count_storage_failure("checkpoint")
                        log.error("stream %s: final checkpoint failed: %s", stream.name, exc)
                    stream.wal.close()
        self._opened = False

    def _reference_for(self, name: str) -> Reference:
        ref = self.references.get(name, self.default_reference)
        if ref is None:
            raise UnknownStreamError(
                f"Unknown stream {name!r}: this service monitors {sorted(self.references)}"
                " and has no default reference for new streams. Post to one of those, or"
                " restart with --reference PATH (no name) to create streams on first ingest."
            )
        return ref

    def _create(self, name: str) -> _Stream:
        """Build (or recover) stream ``name``; the caller holds ``self._lock``."""
        if name in self._streams:
            return self._streams[name]
        check_name(name)
        if len(self._streams) >= self.max_streams:
            raise OverloadedError(
                f"This service already runs {len(self._streams)} streams (--max-streams"
                f" {self.max_streams}); stream {name!r} was not created. Reuse a stream name"
                " or raise the limit."
            )
        ref = self._reference_for(name)
        wal = None
        if self.state_dir is not None:
            wal = WriteAheadLog(self.state_dir / "streams" / name, fsync=self.fsync)
        stream = _Stream(name, ref, self.settings, history=self.history, wal=wal)
        with stream.lock:  # the explanation worker may look at it during the replay
            self._streams[name] = stream
            try:
                if wal is not None:
                    self._recover(stream, wal)
            except BaseException:
                del self._streams[name]
                raise
        return stream

    def _recover(self, stream: _Stream, wal: WriteAheadLog) -> None:
        ckpt = read_checkpoint(wal.checkpoint_path)
        after = 0
        if ckpt is not None:
            after, payload = ckpt
            stream.load_payload(payload, folder=wal.folder)
        recovered = wal.open(after=after)
        for _seq, payload in recovered.records:
            (received,) = _RECEIVED.unpack_from(payload)
            record = record_from_bytes(payload[_RECEIVED.size :])
            if isinstance(record, Batch):
                self._apply(stream, record, received)
            else:
                self._apply_outcomes(stream, record, received)
        stream.since_checkpoint = len(recovered.records)
        stream.publish()
        if recovered.records or recovered.truncated_bytes:
            log.info(
                "stream %s: recovered checkpoint at record %d + %d log records (%d rows)",
                stream.name,
                after,
                len(recovered.records),
                stream.monitor.count,
            )

    @contextmanager
    def _locked(self, stream: _Stream) -> Iterator[_Stream]:
        if not stream.lock.acquire(timeout=self.lock_timeout):
            raise OverloadedError(
                f"Stream {stream.name!r} stayed busy for {self.lock_timeout:g} s; retry the"
                " request later or send smaller batches."
            )
        try:
            yield stream
        finally:
            stream.lock.release()

    def _get(self, name: str, *, create: bool) -> _Stream:
        check_name(name)
        stream = self._streams.get(name)
        if stream is not None:
            return stream
        if not create:
            raise UnknownStreamError(
                f"Unknown stream {name!r}; known streams: {sorted(self._streams)}."
            )
        self._reference_for(name)  # fails fast, before taking the registry lock
        with self._lock:
            return self._create(name)

    # ------------------------------------------------------------------ writes
    def ingest(self, name: str, batch: Batch) -> IngestReceipt:
        """Validate ``batch`` against stream ``name`` (created on first use with the default
        reference), log it durably, feed it to the monitor; returns the receipt.

        Nothing is logged or changed when the batch is rejected; a log write that fails
        raises :class:`StorageError` and applies nothing either (the batch was not
        acknowledged, so the client retries it). A failed checkpoint does not fail the
        request: the record is in the log, which is kept whole until a checkpoint succeeds.
        """
        received = self.clock()
        check_name(name)
        dim = self._reference_for(name).dim
        shape = np.shape(batch.embeddings)
        if len(shape) == 2 and shape[1] != dim:
            raise DimensionMismatchError(
                f"Stream {name!r} expects embeddings of dimension {dim} (its reference); got"
                f" {shape[1]}. Embed with the reference's model, or post to a stream whose"
                " reference matches."
            )
        batch = batch.checked(dim=dim)
        stream = self._get(name, create=True)
        with self._locked(stream):
            self._check_outcome_names(stream, batch.outcomes)
            if batch.timestamps is None and stream.monitor.mode == "time":
                stamps = np.full(batch.n_rows, round(received * 1e9), dtype=np.int64)
                if stream.last_ts is not None:
                    stamps = np.maximum(stamps, stream.last_ts)
                batch = batch.with_timestamps(stamps)
            self._check_timestamps(stream, batch.timestamps)
            seq = 0
            if stream.wal is not None:
                seq = self._log(stream.wal, _RECEIVED.pack(received) + batch.to_record())
            closed = self._apply(stream, batch, received)
            self._maybe_checkpoint(stream)
            stream.publish()
            return IngestReceipt(name, batch.n_rows, stream.monitor.count, closed, seq)

    def post_outcomes(self, name: str, events: OutcomeEvents) -> int:
        """Record outcome events for stream ``name`` (must exist); returns the events counted
        (non-null values). They count toward the window open when they arrive."""
        received = self.clock()
        stream = self._get(name, create=False)
        n = len(next(iter(events.outcomes.values()), []))
        events = OutcomeEvents(
            check_outcomes(events.outcomes, n),
            None if events.timestamps is None else np.asarray(events.timestamps, np.int64),
        )
        with self._locked(stream):
            self._check_outcome_names(stream, events.outcomes)
            if stream.wal is not None:
                self._log(stream.wal, _RECEIVED.pack(received) + events.to_record())
            self._apply_outcomes(stream, events, received)
            self._maybe_checkpoint(stream)
            stream.publish()
        return events.n_events

    def checkpoint(self, name: str | None = None) -> None:
        """Checkpoint one stream (or all) now and truncate its log."""
        for stream in [self._get(name, create=False)] if name else list(self._streams.values()):
            with self._locked(stream):
                if stream.wal is not None:
                    stream.wal.checkpoint(stream.state_payload())
                    stream.since_checkpoint = 0

    def record_rejection(self, reason: str) -> None:
        """Count a rejected request under ``reason`` (exposed as a Prometheus counter)."""
        with self._rejected_lock:
            self._rejected[reason] = self._rejected.get(reason, 0) + 1

    @property
    def rejections(self) -> dict[str, int]:
        with self._rejected_lock:
            return dict(self._rejected)

    def _count_storage_failure(self, what: str) -> None:
        with self._rejected_lock:
            self._storage_failures[what] = self._storage_failures.get(what, 0) + 1

    @property
    def storage_failures(self) -> dict[str, int]:
        """Failed state writes by kind: ``log`` (a request refused with HTTP 507) and
        ``checkpoint`` (a checkpoint not written; the log kept every record)."""
        with self._rejected_lock:
            return dict(self._storage_failures)

    @property
    def broken_logs(self) -> list[str]:
        """Streams whose log refuses every write until a restart (a failed write that could
        not be cut back, ``WriteAheadLog.broken``); ``/readyz`` reports them."""
        streams = list(self._streams.items())  # a copy: streams may be added meanwhile
        return sorted(name for name, s in streams if s.wal is not None and s.wal.broken)

    def _log(self, wal: WriteAheadLog, payload: bytes) -> int:
        """Append a record; a failed write is counted and re-raised (nothing applied)."""
        try:
            return wal.append(payload)
        except StorageError:
            self._count_storage_failure("log")
            raise

    def _maybe_checkpoint(self, stream: _Stream) -> None:
        if stream.wal is None:
            return
        stream.since_checkpoint += 1
        if stream.since_checkpoint >= self.checkpoint_every:
            try:
                stream.wal.checkpoint(stream.state_payload())
            except StorageError as exc:
                # The record that triggered it is logged and applied: the request succeeds,
                # the log keeps growing and the next request tries again.
                self._count_storage_failure("checkpoint")
                log.error("stream %s: checkpoint failed, log kept whole: %s", stream.name, exc)
                return
            stream.since_checkpoint = 0

    @staticmethod
    def _check_outcome_names(stream: _Stream, outcomes: Mapping[str, np.ndarray]) -> None:
        known = set(stream.outcome_events) | set(stream.accumulator)
        new = set(outcomes) - known
        if len(known) + len(new) > MAX_OUTCOMES:
            raise InvalidBodyError(
                f"Stream {stream.name!r} already tracks {len(known)} outcomes; {sorted(new)}"
                f" would pass the limit of {MAX_OUTCOMES} per stream. Reuse the existing names"
                f" {sorted(known)}."
            )

    @staticmethod
    def _check_timestamps(stream: _Stream, ts: np.ndarray | None) -> None:
        if ts is not None:
            check_time_order(ts, stream.last_ts)

    # ------------------------------------------------------------------ applying
    def _apply(self, stream: _Stream, batch: Batch, received: float) -> int:
        """Feed a validated batch, cut at pane boundaries so each piece closes at most the
        windows ending at its edge (the monitor cuts at the same places, so the sketches see
        the same updates), and attribute per-row outcomes to the window they belong to."""
        mon = stream.monitor
        closed = 0
        for piece in _pieces(mon, batch):
            if mon.mode == "count":
                self._accumulate(stream, piece.outcomes)
            mon.update(
                piece.embeddings,
                timestamps=None
                if piece.timestamps is None
                else piece.timestamps.astype("datetime64[ns]"),
                ids=piece.ids,
            )
            results = mon.check()
            samples = mon.take_samples()
            for w, sample in zip(results, samples, strict=True):
                self._close_window(stream, w, sample, received)
            closed += len(results)
            if mon.mode == "time":
                self._accumulate(stream, piece.outcomes)
        for key, values in batch.outcomes.items():
            stream.outcome_events[key] = stream.outcome_events.get(key, 0) + int(
                np.isfinite(values).sum()
            )
        if batch.timestamps is not None and batch.n_rows:
            stream.last_ts = int(batch.timestamps[-1])
        stream.batches += 1
        stream.last_ingest = received
        return closed

    def _apply_outcomes(self, stream: _Stream, events: OutcomeEvents, received: float) -> None:
        self._accumulate(stream, events.outcomes)
        for key, values in events.outcomes.items():
            stream.outcome_events[key] = stream.outcome_events.get(key, 0) + int(
                np.isfinite(values).sum()
            )

    @staticmethod
    def _accumulate(stream: _Stream, outcomes: Mapping[str, np.ndarray]) -> None:
        for key, values in outcomes.items():
            finite = values[np.isfinite(values)]
            acc = stream.accumulator.setdefault(key, [0.0, 0.0])
            acc[0] += float(finite.sum())
            acc[1] += float(finite.size)

    def _close_window(
        self,
        stream: _Stream,
        window: WindowResult,
        sample: tuple[np.ndarray, np.ndarray],
        received: float,
    ) -> None:
        rates = {k: s / n for k, (s, n) in stream.accumulator.items() if n > 0}
        stream.accumulator = {k: [0.0, 0.0] for k in stream.accumulator}
        rows, ids = sample
        stream.explanation = None
        stream.points = _project(stream.reference, rows)
        stream.point_ids = tuple(str(i) for i in ids)
        stream.point_labels = ("",) * rows.shape[0]
        stream.pending = None
        if self.settings.explain and rows.shape[0] >= _MIN_EXPLAIN_ROWS:
            stream.pending = (window.index, rows, ids)
        summary = WindowSummary(window, received, rates, None)
        stream.history.append(summary)
        stream.windows += 1
        stream.drift_windows += int(window.result.drifted)
        if self.on_window is not None:
            try:
                self.on_window(stream.name, summary)
            except Exception:
                # The log, not the store, is the durable record: a failing store must not
                # leave the stream half-updated or refuse the batch that closed the window.
                log.exception("stream %s: storing window %d failed", stream.name, window.index)
        if stream.pending is not None:
            if self._worker is not None:
                self._queue.put(stream.name)
            else:
                self._explain(stream, *self._take(stream))

    @staticmethod
    def _take(stream: _Stream) -> tuple[int, np.ndarray, np.ndarray]:
        assert stream.pending is not None
        job, stream.pending = stream.pending, None
        return job

    def _explain(self, stream: _Stream, index: int, rows: np.ndarray, ids: np.ndarray) -> None:
        """Explain window ``index`` from its reservoir rows and, if it is still the latest,
        attach the result (new-cluster share, region labels of the points, summary)."""
        self._attach(
            stream,
            index,
            rows.shape[0],
            explain(stream.reference, rows, ids=ids, seed=self.settings.seed),
        )

    @staticmethod
    def _attach(stream: _Stream, index: int, n_rows: int, exp: Explanation) -> None:
        share = float(sum(r.size for r in exp.new_clusters) / max(exp.n_current_used, 1))
        labels = [""] * n_rows
        for region in exp.new_clusters:
            for i in region.members:
                labels[i] = region.label
        summary = _explanation_summary(exp.to_dict())
        if not stream.history or stream.history[-1].window.index != index:
            return  # superseded while it ran
        stream.history[-1] = replace(stream.history[-1], new_cluster_share=share)
        stream.point_labels = tuple(labels)
        stream.explanation = summary
        stream.publish()

    def _explain_loop(self) -> None:
        while True:
            name = self._queue.get()
            try:
                if name is None:
                    return
                stream = self._streams.get(name)
                if stream is None:
                    continue
                with stream.lock:
                    job = self._take(stream) if stream.pending is not None else None
                if job is None:
                    continue
                index, rows, ids = job
                try:
                    exp = explain(stream.reference, rows, ids=ids, seed=self.settings.seed)
                except Exception:  # an explanation must never take the service down
                    log.exception("stream %s: explaining window %d failed", name, index)
                    continue
                with stream.lock:
                    self._attach(stream, index, rows.shape[0], exp)
            finally:
                self._queue.task_done()

    # ------------------------------------------------------------------ reads
    def names(self) -> list[str]:
        return sorted(tuple(self._streams))  # a copy first: streams may be added meanwhile

    def snapshot(self, name: str) -> StreamSnapshot:
        """The snapshot of stream ``name`` published after its last change (see the module
        docstring); never waits for the stream's lock, so never for a window test."""
        return self._get(name, create=False).published

    def snapshots(self) -> list[StreamSnapshot]:
        """:meth:`snapshot` of every stream, by name."""
        return [self.snapshot(name) for name in self.names()]

    def monitor_state(self, name: str) -> bytes:
        """``StreamMonitor.state_bytes()`` of stream ``name`` (for checks and backups)."""
        stream = self._get(name, create=False)
        with self._locked(stream):
            return stream.monitor.state_bytes()


def _pieces(monitor: StreamMonitor, batch: Batch) -> Iterator[Batch]:
    """``batch`` cut where the monitor's panes end (rows for count windows, pane keys of the
    timestamps for time windows)."""
    m = batch.n_rows
    step = int(monitor._step)
    if monitor.mode == "count":
        pos = 0
        filled = monitor.count % step
        while pos < m:
            take = min(step - filled, m - pos)
            yield batch.rows(pos, pos + take)
            pos += take
            filled = 0
        return
    assert batch.timestamps is not None
    keys = batch.timestamps // step
    cuts = np.flatnonzero(np.diff(keys)) + 1
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, m], strict=True):
        yield batch.rows(int(lo), int(hi))


def _explanation_summary(data: dict[str, Any]) -> dict[str, Any]:
    """The parts of an explanation a reader needs (members lists dropped: they index rows
    of a sample that is not kept)."""
    keep = ("reference_id", "n_reference", "n_current", "n_current_used")
    out: dict[str, Any] = {k: data[k] for k in keep}
    for side in ("new_clusters", "vanished_clusters"):
        out[side] = [{k: v for k, v in r.items() if k != "members"} for r in data[side]]
    out["moved_clusters"] = [
        c for c in data["reference_clusters"] if c.get("moved") or c.get("reweighted")
    ]
    out["mean_shift_outside_share"] = data["mean_shift_outside_share"]
    out["top_directions"] = sorted(
        data["directions"], key=lambda d: -abs(float(d.get("mean_shift", 0.0) or 0.0))
    )[:3]
    return _finite(out)


def _finite(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
