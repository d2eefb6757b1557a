"""``embdrift check --engine dask``: the check of a many-file window on a Dask cluster."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer

from embdrift.cli._common import err_console, out_console, progress, result_table
from embdrift.cli._stream import _bound, _table, parse_span
from embdrift.errors import InvalidParameterError
from embdrift.reference import Reference
from embdrift.store import Store
from embdrift.stream.monitor import StreamMonitor

__all__ = ["check_on_dask"]


def check_on_dask(
    source: str,
    *,
    reference: Path,
    scheduler: str | None,
    workers: int | None,
    window: str | None,
    timestamp_column: str,
    stream: str,
    alpha: float,
    calibration: int | None,
    seed: int,
    column: str | None,
    split_row_groups: bool,
    as_json: bool,
    fail_on_drift: bool,
    store: Path,
) -> None:
    """Sketch SOURCE (a glob) on Dask and test it, as one window or one row per time window."""
    from embdrift.engines.dask import check_dataset, check_windows, connect

    span: dt.timedelta | None = None
    if window is not None:
        parsed = parse_span(window, name="window")
        if not isinstance(parsed, dt.timedelta):
            raise InvalidParameterError(
                f"--window with --engine dask is a duration (e.g. 1d, 1h); got {window!r}."
                " Row-count windows need the rows in order: use 'embdrift stream'."
            )
        span = parsed
    ref = Reference.load(reference)
    replicates = {} if calibration is None else {"n_calibration": calibration}
    monitor = StreamMonitor(ref, alpha=alpha, seed=seed, **replicates)
    where = scheduler or f"a local cluster ({workers or 'one per core'} workers)"
    with progress() as bar, connect(scheduler, n_workers=workers) as client:
        task = bar.add_task(f"sketching {source} on {where}", total=None)

        def on_progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        if span is None:
            result = check_dataset(
                source,
                monitor,
                client=client,
                column=column,
                split_row_groups=split_row_groups,
                on_progress=on_progress,
            )
        else:
            windows = check_windows(
                source,
                monitor,
                window=span,
                timestamp_column=timestamp_column,
                client=client,
                column=column,
                split_row_groups=split_row_groups,
                on_progress=on_progress,
            )
    target = Store(store)
    if span is None:
        target.append_result(result, source=source)
        if as_json:
            typer.echo(result.to_json(indent=2))
        else:
            out_console.print(result_table(result, title=f"embdrift check (dask): {source}"))
        drifted = result.drifted
    else:
        for w in windows:
            target.append_result(
                w.result,
                source=source,
                stream=stream,
                window_start=_bound(w.start),
                window_end=_bound(w.end),
            )
        if as_json:
            for w in windows:
                typer.echo(w.to_json())
        else:
            title = f"embdrift check (dask, {window} windows): {source}"
            out_console.print(_table(windows, title=title, monitor=monitor))
        if not windows:
            err_console.print(f"no window of {window} holds {monitor.min_window_rows}+ rows")
        drifted = any(w.result.drifted for w in windows)
    if fail_on_drift and drifted:
        raise typer.Exit(code=1)
