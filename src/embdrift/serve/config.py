"""Everything ``create_app`` needs, in one frozen object (the CLI builds it from its flags)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from embdrift._validation import check_int
from embdrift.errors import InvalidParameterError
from embdrift.reference import Reference
from embdrift.serve.batch import check_name
from embdrift.serve.registry import MonitorSettings

__all__ = ["ServeConfig"]


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one ``embdrift serve`` process.

    Attributes
    ----------
    references : Mapping[str, Reference]
        Streams configured by name (``--reference NAME=PATH``).
    default_reference : Reference or None
        Reference of streams created on first ingest (``--reference PATH``).
    monitor : MonitorSettings
        Window, alpha, calibration and sketch options of every stream.
    state_dir : Path or None
        Write-ahead logs and checkpoints; None keeps nothing across restarts.
    store : Path or None
        DuckDB file that receives every closed window (owned by the service while it runs).
    token : str or None
        Bearer token of the write endpoints (and of reads with ``protect_reads``).
    protect_reads : bool
        Require the token on ``/metrics``, the ``/v1`` GET endpoints and the page too.
    max_body_bytes : int
        Largest request body (default 32 MiB); larger gets HTTP 413.
    max_rows : int
        Most rows per ingest request (default 10,000); more gets HTTP 413.
    max_streams : int
        Most streams (default 64).
    checkpoint_every : int
        Log records between checkpoints of a stream (default 100).
    history : int
        Closed windows kept per stream for readers (default 500).
    lock_timeout : float
        Seconds a request waits for a busy stream before HTTP 429 with ``Retry-After``
        (default 30). A stream is held for ~10-20 ms per batch (parse check, fsync, sketch
        update) and ~50 ms when the batch closes a window, but the first window of a stream
        also computes its null calibration: ~3 s at window 1000, 500 draws, d = 384 on an idle
        2-core machine, several times that under load. A short timeout would refuse healthy
        traffic then; the queue of waiters is bounded by ``max_inflight`` instead.
    max_inflight : int
        Most write requests (ingest, outcomes) admitted at a time (default 16); one more is
        refused before its body is read with HTTP 503 and ``Retry-After``, and writes
        nothing. Bounds the memory held by requests (``max_inflight`` x ``max_body_bytes``
        plus the parsed batches) and keeps worker threads free for readers: the server runs
        blocking work on a pool of 40 threads, of which writes then hold at most 16.
    fsync : bool
        fsync each log record before the acknowledgement (default True).
    """

    references: Mapping[str, Reference] = field(default_factory=dict)
    default_reference: Reference | None = None
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    state_dir: Path | None = None
    store: Path | None = None
    token: str | None = None
    protect_reads: bool = False
    max_body_bytes: int = 32 * 1024 * 1024
    max_rows: int = 10_000
    max_streams: int = 64
    checkpoint_every: int = 100
    history: int = 500
    lock_timeout: float = 30.0
    fsync: bool = True
    max_inflight: int = 16

    def __post_init__(self) -> None:
        for name in self.references:
            check_name(name)
        if not self.references and self.default_reference is None:
            raise InvalidParameterError(
                "The service needs at least one reference: --reference NAME=PATH for a named"
                " stream, or --reference PATH as the default of streams created on first"
                " ingest."
            )
        check_int(self.max_body_bytes, name="max_body_bytes", low=1024)
        check_int(self.max_rows, name="max_rows", low=1)
        check_int(self.max_streams, name="max_streams", low=1)
        check_int(self.checkpoint_every, name="checkpoint_every", low=1)
        check_int(self.history, name="history", low=1)
        check_int(self.max_inflight, name="max_inflight", low=1)
        if self.protect_reads and self.token is None:
            raise InvalidParameterError(
                "--protect-reads needs a token (--token or EMBDRIFT_TOKEN) to protect with."
            )
