"""Where drift and outcome series come from: CSV/Parquet files, DuckDB tables, the embdrift
store and the Prometheus HTTP API (an edge; no statistics here).

Tables are in *long* form: one row per (time, metric, value), with an optional ``count``
(weight of the point when points are merged into buckets) and, for drift, an optional
``drifted`` flag. Without a metric column the whole table is one series.
"""

from __future__ import annotations

import json
import math
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from embdrift.errors import (
    FileFormatError,
    InsufficientDataError,
    InvalidParameterError,
    PrometheusError,
)
from embdrift.outcomes import Series

__all__ = [
    "TABLE_SUFFIXES",
    "drift_from_store",
    "prometheus_query_range",
    "prometheus_series",
    "read_columns",
    "read_series_table",
]

TABLE_SUFFIXES = (".csv", ".parquet", ".duckdb", ".db")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Prometheus refuses range queries of more than 11,000 points per series.
_MAX_POINTS = 10_000


def _read_arrow(source: Path, table: str | None) -> Any:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    suffix = source.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise FileFormatError(
            f"Cannot read series from {str(source)!r}: unknown file type {suffix or '(none)'!r}."
            f" Supported: {', '.join(TABLE_SUFFIXES)} (DuckDB files need --table)."
        )
    if not source.is_file():
        raise FileFormatError(f"Cannot read series from {str(source)!r}: no such file.")
    try:
        if suffix == ".csv":
            return pacsv.read_csv(source)
        if suffix == ".parquet":
            return pq.read_table(source)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise FileFormatError(f"Cannot read {str(source)!r} as {suffix[1:]}: {exc}") from None
    import duckdb

    if table is None or not _IDENT.match(table):
        raise FileFormatError(
            f"Reading series from the DuckDB file {str(source)!r} needs a table name made of"
            f" letters, digits and underscores; got {table!r}. Pass --table NAME."
        )
    try:
        con = duckdb.connect(str(source), read_only=True)
    except duckdb.Error as exc:
        raise FileFormatError(f"Cannot open DuckDB file {str(source)!r}: {exc}") from None
    try:
        relation = con.sql(f'SELECT * FROM "{table}"')
        # DuckDB 2 names it to_arrow_table(); DuckDB 1 fetch_arrow_table().
        fetch = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
        return fetch()
    except duckdb.Error as exc:
        raise FileFormatError(f"Cannot read table {table!r} from {str(source)!r}: {exc}") from None
    finally:
        con.close()


def read_columns(
    path: str | os.PathLike[str], columns: list[str], *, table: str | None = None
) -> dict[str, np.ndarray]:
    """Named columns of a CSV, Parquet or DuckDB table as numpy arrays (e.g. per-item
    region labels and outcomes)."""
    source = Path(path)
    data = _read_arrow(source, table)
    missing = [c for c in columns if c not in data.column_names]
    if missing:
        raise FileFormatError(
            f"{str(source)!r} has no column(s) {missing}; columns: {list(data.column_names)}."
        )
    return {c: np.asarray(data.column(c).to_numpy(zero_copy_only=False)) for c in columns}


def read_series_table(
    path: str | os.PathLike[str],
    *,
    table: str | None = None,
    time_column: str = "time",
    metric_column: str = "metric",
    value_column: str = "value",
    count_column: str = "count",
    drifted_column: str = "drifted",
) -> dict[str, Series]:
    """Read long-form series from a CSV, Parquet or DuckDB file.

    Parameters
    ----------
    path : path-like
        ``.csv``, ``.parquet``, or a DuckDB file (``.duckdb``/``.db``) with ``table``.
    table : str, optional
        Table name inside a DuckDB file.
    time_column, metric_column, value_column, count_column, drifted_column : str
        Column names; metric, count and drifted are optional.

    Returns
    -------
    dict of str -> Series
        One validated series per metric, in order of first appearance.
    """
    source = Path(path)
    data = _read_arrow(source, table)
    names = list(data.column_names)
    for needed in (time_column, value_column):
        if needed not in names:
            raise FileFormatError(
                f"{str(source)!r} has no {needed!r} column; columns: {names}. Name the columns"
                f" time, metric, value[, count] or pass the column options."
            )
    if data.num_rows == 0:
        raise InsufficientDataError(f"{str(source)!r} holds no rows; it needs time and value.")

    def col(name: str) -> np.ndarray:
        return np.asarray(data.column(name).to_numpy(zero_copy_only=False))

    time = col(time_column)
    value = col(value_column)
    count = col(count_column) if count_column in names else None
    drifted = col(drifted_column) if drifted_column in names else None
    if metric_column in names:
        metric = col(metric_column).astype(str)
        order = list(dict.fromkeys(metric.tolist()))
    else:
        metric = np.full(time.size, source.stem)
        order = [source.stem]
    out: dict[str, Series] = {}
    for name in order:
        rows = metric == name
        out[name] = Series.from_arrays(
            name,
            time[rows],
            value[rows],
            count=None if count is None else count[rows],
            drifted=None if drifted is None else drifted[rows],
        )
    return out


def drift_from_store(
    path: str | os.PathLike[str], *, stream: str = "batch", metric: str = "mmd"
) -> Series:
    """The drift series of one metric from the embdrift DuckDB store, with its decisions."""
    from embdrift.store import Store

    rows = Store(path).drift_series(stream, metric)
    if not rows:
        raise InsufficientDataError(
            f"The store {str(path)!r} holds no {metric!r} results for stream {stream!r}. Run"
            " 'embdrift check' (or the monitor) first, or pass --stream/--metric."
        )
    return Series.from_arrays(
        metric,
        [r[0] for r in rows],
        [r[1] for r in rows],
        drifted=[r[3] for r in rows],
    )


def _check_url(url: str) -> str:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidParameterError(
            f"The 'prometheus' URL must be http(s)://host:port; got {url!r}."
        )
    return url.rstrip("/")


def prometheus_query_range(
    url: str,
    query: str,
    *,
    start: float,
    end: float,
    step: float,
    timeout: float = 30.0,
) -> list[tuple[dict[str, str], np.ndarray, np.ndarray]]:
    """Run a PromQL range query; returns ``(labels, times, values)`` per series.

    Long ranges are split into requests of at most 10,000 steps (Prometheus refuses more
    than 11,000 points per series). ``NaN`` and infinite samples are dropped (they become gaps).
    """
    base = _check_url(url)
    start, end, step = float(start), float(end), float(step)
    if not (math.isfinite(start) and math.isfinite(end) and end > start):
        raise InvalidParameterError(f"The range must have end > start; got {start}..{end}.")
    if not (math.isfinite(step) and step > 0):
        raise InvalidParameterError(f"The 'step' must be a positive duration; got {step}.")
    series: dict[str, tuple[dict[str, str], list[float], list[float]]] = {}
    chunk_start = start
    while chunk_start <= end:
        chunk_end = min(end, chunk_start + step * (_MAX_POINTS - 1))
        body = urllib.parse.urlencode(
            {"query": query, "start": repr(chunk_start), "end": repr(chunk_end), "step": repr(step)}
        ).encode()
        request = urllib.request.Request(
            f"{base}/api/v1/query_range",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except ValueError:
                pass
            raise PrometheusError(
                f"Prometheus at {base} rejected the query {query!r} (HTTP {exc.code}): {detail}."
                " Check the PromQL in the Prometheus UI."
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PrometheusError(
                f"Cannot reach Prometheus at {base}: {reason}. Is it running, and is the URL"
                " right (e.g. http://127.0.0.1:9090)?"
            ) from None
        if payload.get("status") != "success":
            raise PrometheusError(f"Prometheus query {query!r} failed: {payload.get('error')}.")
        result = payload.get("data", {})
        if result.get("resultType") != "matrix":
            raise PrometheusError(
                f"Prometheus query {query!r} returned {result.get('resultType')!r}, not a range"
                " vector (matrix)."
            )
        for item in result.get("result", []):
            labels = {str(k): str(v) for k, v in item.get("metric", {}).items()}
            key = json.dumps(labels, sort_keys=True)
            entry = series.setdefault(key, (labels, [], []))
            for ts, val in item.get("values", []):
                entry[1].append(float(ts))
                entry[2].append(float(val))
        chunk_start = chunk_end + step
    out = []
    for labels, ts_list, val_list in series.values():
        t = np.asarray(ts_list)
        v = np.asarray(val_list)
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        keep = np.isfinite(v) & np.concatenate([[True], np.diff(t) > 0])
        out.append((labels, t[keep], v[keep]))
    return out


def prometheus_series(
    url: str,
    query: str,
    *,
    name: str,
    start: float,
    end: float,
    step: float,
    timeout: float = 30.0,
) -> Series:
    """One series from a PromQL range query that must return exactly one series."""
    found = prometheus_query_range(url, query, start=start, end=end, step=step, timeout=timeout)
    found = [f for f in found if f[1].size]
    if not found:
        raise InsufficientDataError(
            f"Prometheus query {query!r} for {name!r} returned no samples between"
            f" {start:.0f} and {end:.0f}. Check the metric name and the --start/--end range."
        )
    if len(found) > 1:
        shown = ", ".join(json.dumps(f[0], sort_keys=True) for f in found[:3])
        raise InvalidParameterError(
            f"Prometheus query {query!r} for {name!r} returned {len(found)} series ({shown}"
            f"{', ...' if len(found) > 3 else ''}); it must return one. Aggregate it, e.g."
            f" avg({query})."
        )
    _, t, v = found[0]
    return Series.from_arrays(name, t, v)
