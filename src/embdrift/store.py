"""The DuckDB store: drift results (batch checks and stream windows) in one local file.

DuckDB lets one process write a file at a time. CLI commands open the store only for the
moment they write; a long-running owner (the service) keeps it open. A store locked by another
process raises :class:`~embdrift.errors.StoreLockedError` naming that process.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from embdrift.errors import StoreLockedError
from embdrift.results import DriftResult

__all__ = ["DEFAULT_STORE", "ResultRow", "Store"]

DEFAULT_STORE = Path(".embdrift") / "embdrift.duckdb"

_SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS result_ids START 1;
CREATE TABLE IF NOT EXISTS results (
    id BIGINT PRIMARY KEY DEFAULT nextval('result_ids'),
    created_at TIMESTAMPTZ NOT NULL,
    source VARCHAR NOT NULL,
    stream VARCHAR NOT NULL,
    reference_id VARCHAR NOT NULL,
    window_start TIMESTAMPTZ,
    window_end TIMESTAMPTZ,
    drifted BOOLEAN NOT NULL,
    p_value DOUBLE NOT NULL,
    alpha DOUBLE NOT NULL,
    n_reference BIGINT NOT NULL,
    n_current BIGINT NOT NULL,
    result_json VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS metric_values (
    result_id BIGINT NOT NULL,
    metric VARCHAR NOT NULL,
    value DOUBLE NOT NULL,
    p_value DOUBLE,
    threshold DOUBLE,
    effect_size DOUBLE NOT NULL,
    drifted BOOLEAN NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class ResultRow:
    """One stored result with where and when it came from."""

    id: int
    created_at: datetime
    source: str
    stream: str
    window_start: datetime | None
    window_end: datetime | None
    result: DriftResult


class Store:
    """A DuckDB file holding drift results.

    Parameters
    ----------
    path : path-like
        The database file; created (with its folder) on first write.
    """

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_STORE) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """An open connection with the schema in place; closed on exit."""
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            raise _lock_error(self.path, exc) from None
        try:
            if not read_only:
                con.execute(_SCHEMA)
            yield con
        finally:
            con.close()

    def append_result(
        self,
        result: DriftResult,
        *,
        source: str,
        stream: str = "batch",
        window_start: datetime | None = None,
        window_end: datetime | None = None,
    ) -> int:
        """Store one result (and its per-metric rows) in one transaction; returns its id."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            row = con.execute(
                "INSERT INTO results (created_at, source, stream, reference_id, window_start,"
                " window_end, drifted, p_value, alpha, n_reference, n_current, result_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [
                    datetime.now(UTC),
                    source,
                    stream,
                    result.reference_id,
                    window_start,
                    window_end,
                    result.drifted,
                    result.p_value,
                    result.alpha,
                    result.n_reference,
                    result.n_current,
                    result.to_json(),
                ],
            ).fetchone()
            assert row is not None
            result_id = int(row[0])
            con.executemany(
                "INSERT INTO metric_values VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    [result_id, name, m.value, m.p_value, m.threshold, m.effect_size, m.drifted]
                    for name, m in result.metrics.items()
                ],
            )
            con.execute("COMMIT")
        return result_id

    def results(self, *, stream: str | None = None, limit: int | None = None) -> list[ResultRow]:
        """Stored results, oldest first (optionally one stream, optionally the last ``limit``)."""
        if not self.path.exists():
            return []
        query = (
            "SELECT id, created_at, source, stream, window_start, window_end, result_json"
            " FROM results"
        )
        params: list[Any] = []
        if stream is not None:
            query += " WHERE stream = ?"
            params.append(stream)
        query += " ORDER BY id DESC"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        with self.connect(read_only=True) as con:
            rows = con.execute(query, params).fetchall()
        return [
            ResultRow(
                id=int(r[0]),
                created_at=r[1],
                source=r[2],
                stream=r[3],
                window_start=r[4],
                window_end=r[5],
                result=DriftResult.from_json(r[6]),
            )
            for r in reversed(rows)
        ]

    def drift_series(
        self, stream: str = "batch", metric: str = "mmd"
    ) -> list[tuple[datetime, float, float | None, bool]]:
        """(time, value, threshold, drifted) of one metric over time; time is the window end,
        or the time of the check for batch results."""
        if not self.path.exists():
            return []
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "SELECT coalesce(r.window_end, r.created_at) AS t, m.value, m.threshold,"
                " m.drifted FROM results r JOIN metric_values m ON m.result_id = r.id"
                " WHERE r.stream = ? AND m.metric = ? ORDER BY t, r.id",
                [stream, metric],
            ).fetchall()
        return [(r[0], float(r[1]), r[2], bool(r[3])) for r in rows]


def _lock_error(path: Path, exc: Exception) -> Exception:
    text = str(exc)
    if "lock" not in text.lower():
        return exc
    holder = re.search(r"\(PID (\d+)\)", text)
    who = f"process {holder.group(1)}" if holder else "another process"
    return StoreLockedError(
        f"The store {str(path)!r} is locked by {who} (DuckDB allows one writer per file)."
        " Stop that process (e.g. a running 'embdrift serve'), wait for it to finish, or pass"
        " --store to use another file."
    )
