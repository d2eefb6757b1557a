"""Closed windows -> the DuckDB store, owned by the service while it runs.

The sink keeps one connection open from :meth:`StoreSink.open` to :meth:`StoreSink.close`, so
DuckDB's file lock marks the service as the store's writer (a CLI command that tries to write
meanwhile gets :class:`~embdrift.errors.StoreLockedError` naming this process). Each window is
stored with ``source = "serve:<stream>:window:<index>"``; a window already present is not
stored again, which makes the sink idempotent under log replay after a crash.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import duckdb
import numpy as np

from embdrift.serve.registry import WindowSummary
from embdrift.store import Store

__all__ = ["StoreSink"]


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
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._hold: Any = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"StoreSink({self.store!r})"

    def open(self) -> StoreSink:
        """Take the store's write lock for the life of the service (raises
        :class:`~embdrift.errors.StoreLockedError` if another process holds it)."""
        if self._hold is None:
            hold = self.store.connect()
            self._con = hold.__enter__()
            self._hold = hold
        return self

    def close(self) -> None:
        if self._hold is not None:
            self._hold.__exit__(None, None, None)
            self._hold = self._con = None

    @staticmethod
    def source(stream: str, index: int) -> str:
        return f"serve:{stream}:window:{index}"

    def __call__(self, stream: str, summary: WindowSummary) -> None:
        w = summary.window
        source = self.source(stream, w.index)
        with self._lock:
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
