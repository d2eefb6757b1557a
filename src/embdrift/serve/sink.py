"""Closed windows -> the DuckDB store, owned by the service while it runs.

The sink keeps one connection open from :meth:`StoreSink.open` to :meth:`StoreSink.close`, so
DuckDB's file lock marks the service as the store's writer (a CLI command that tries to write
meanwhile gets :class:`~embdrift.errors.StoreLockedError` naming this process). Each window is
stored with ``source = "serve:<stream>:window:<index>"``; a window already present is not
stored again, which makes the sink idempotent under log replay after a crash. A store that
refuses writes loses no window silently: see :class:`StoreSink` (Notes).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

import duckdb
import numpy as np

from embdrift.serve.registry import WindowSummary
from embdrift.store import Store

__all__ = ["StoreSink"]

log = logging.getLogger("embdrift.serve")


def _bound(value: Any) -> dt.datetime | None:
    """Time bounds of a time window as aware datetimes; count windows have none."""
    if isinstance(value, np.datetime64):
        us = int(value.astype("datetime64[us]").astype(np.int64))
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)
    return None


class StoreSink:
    """Append every closed window of the service's streams to a :class:`Store`.

    Parameters
    ----------
    store : Store
        The DuckDB store (its file is created on :meth:`open`).
    max_pending : int
        Most windows kept in memory while the store refuses writes (default 10000); past it
        the oldest pending window is dropped from the store's side (counted in
        :attr:`dropped` and logged; it stays in the stream's history, so the next start
        stores it if the history still holds it).

    Notes
    -----
    The write-ahead log, not the store, is the service's durable record, so a store that
    fails (disk full, I/O error, a damaged file) never refuses or undoes the batch that
    closed a window. The window is kept *pending* instead: every later window first retries
    the pending ones (oldest first), :meth:`close` tries once more, and at the next start
    :meth:`backfill` stores every window of the recovered histories (``history`` windows
    per stream, checkpointed with the stream) that the store lacks. Each failure is logged
    at ERROR level with the store's error and the number of windows pending (also
    :attr:`pending`, :attr:`failures`). Windows are stored once (idempotent by ``source``).
    """

    def __init__(self, store: Store, *, max_pending: int = 10_000) -> None:
        self.store = store
        self.max_pending = max_pending
        self._hold: Any = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()
        self._pending: deque[tuple[str, WindowSummary]] = deque()
        self._failures = 0
        self._dropped = 0

    def __repr__(self) -> str:
        return f"StoreSink({self.store!r}, pending={len(self._pending)})"

    def open(self) -> StoreSink:
        """Take the store's write lock for the life of the service (raises
        :class:`~embdrift.errors.StoreLockedError` if another process holds it)."""
        if self._hold is None:
            hold = self.store.connect()
            self._con = hold.__enter__()
            self._hold = hold
        return self

    def close(self) -> None:
        """Retry the pending windows once more, then release the store."""
        with self._lock:
            self._retry()
            if self._pending:
                log.error(
                    "store %s: %d closed windows could not be stored; they are stored at the"
                    " next start from the streams' checkpointed history (windows older than"
                    " that history are lost to the store)",
                    self.store.path,
                    len(self._pending),
                )
        if self._hold is not None:
            self._hold.__exit__(None, None, None)
            self._hold = self._con = None

    @property
    def pending(self) -> int:
        """Windows waiting for the store to accept writes again."""
        return len(self._pending)

    @property
    def failures(self) -> int:
        """Failed store writes so far."""
        return self._failures

    @property
    def dropped(self) -> int:
        """Pending windows dropped past ``max_pending``."""
        return self._dropped

    @staticmethod
    def source(stream: str, index: int) -> str:
        return f"serve:{stream}:window:{index}"

    def __call__(self, stream: str, summary: WindowSummary) -> None:
        with self._lock:
            self._pending.append((stream, summary))
            self._retry()

    def backfill(self, stream: str, summaries: Iterable[WindowSummary]) -> int:
        """Store the windows of ``summaries`` that the store lacks (a restart after a store
        failure or a crash); returns how many were stored."""
        with self._lock:
            try:
                have = self._stored_sources(stream)
            except Exception as exc:  # the windows stay in the history for the next start
                self._failures += 1
                log.error("store %s: could not read stored windows: %s", self.store.path, exc)
                return 0
            todo = [w for w in summaries if self.source(stream, w.window.index) not in have]
            before = len(self._pending) + len(todo)
            self._pending.extend((stream, w) for w in todo)
            self._retry()
            return before - len(self._pending)

    def _stored_sources(self, stream: str) -> set[str]:
        query = "SELECT source FROM results WHERE stream = ?"
        if self._con is not None:
            return {str(r[0]) for r in self._con.execute(query, [stream]).fetchall()}
        with self.store.connect() as con:
            return {str(r[0]) for r in con.execute(query, [stream]).fetchall()}

    def _retry(self) -> None:
        """Store the pending windows in order until one fails (the caller holds the lock)."""
        while self._pending:
            stream, summary = self._pending[0]
            try:
                self._store(stream, summary)
            except Exception as exc:  # duckdb.Error, OSError: the store refused the write
                self._failures += 1
                while len(self._pending) > self.max_pending:
                    self._pending.popleft()
                    self._dropped += 1
                log.error(
                    "store %s: storing window %d of stream %s failed (%s); %d windows pending,"
                    " retried with the next window",
                    self.store.path,
                    summary.window.index,
                    stream,
                    exc,
                    len(self._pending),
                )
                return
            self._pending.popleft()

    def _store(self, stream: str, summary: WindowSummary) -> None:
        w = summary.window
        source = self.source(stream, w.index)
        if self._con is not None:
            seen = self._con.execute(
                "SELECT count(*) FROM results WHERE stream = ? AND source = ?",
                [stream, source],
            ).fetchone()
            if seen is not None and int(seen[0]) > 0:
                return
        self.store.append_result(
            w.result,
            source=source,
            stream=stream,
            window_start=_bound(w.start),
            window_end=_bound(w.end),
        )
