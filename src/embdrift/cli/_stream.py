"""``embdrift stream``: replay a file through the streaming monitor, one row per window."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from embdrift.cli._common import (
    DEFAULT_STORE_PATH,
    AlphaWindowOption,
    CalibrationOption,
    ConsecutiveOption,
    StepOption,
    StoreOption,
    StreamSeedOption,
    WindowOption,
    exits_on_error,
    out_console,
    progress,
)
from embdrift.errors import InvalidParameterError
from embdrift.io import read_embeddings
from embdrift.reference import Reference
from embdrift.store import Store
from embdrift.stream.monitor import StreamMonitor, WindowResult

__all__ = ["parse_span", "stream"]

_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_SPAN = re.compile(r"^\s*(\d+)\s*([a-z]*)\s*$")


def parse_span(text: str, *, name: str) -> int | dt.timedelta:
    """``"1000"`` -> 1000 rows; ``"30s"``, ``"15min"``, ``"1h"``, ``"1d"``, ``"1w"`` -> time."""
    match = _SPAN.match(text.lower())
    if match is None or match.group(2) not in ("", "rows", *_UNITS):
        raise InvalidParameterError(
            f"--{name} must be a row count (e.g. 1000) or a duration with a unit in"
            f" {{s, min, h, d, w}} (e.g. 1h); got {text!r}."
        )
    value, unit = int(match.group(1)), match.group(2)
    if value <= 0:
        raise InvalidParameterError(f"--{name} must be positive; got {text!r}.")
    if unit in ("", "rows"):
        return value
    return dt.timedelta(seconds=value * _UNITS[unit])


def _bound(value: Any) -> dt.datetime | None:
    if isinstance(value, np.datetime64):
        us = int(value.astype("datetime64[us]").astype(np.int64))
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)
    return None


def _show(value: Any) -> str:
    if isinstance(value, np.datetime64):
        return str(value.astype("datetime64[s]")).replace("T", " ")
    return str(value)


@exits_on_error
def stream(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="SOURCE", help="Embeddings to replay: .npz or .parquet (with timestamps)."
        ),
    ],
    reference: Annotated[
        Path, typer.Option("--reference", "-r", help="Reference file from 'reference build'.")
    ],
    window: WindowOption = "1000",
    step: StepOption = None,
    alpha: AlphaWindowOption = 0.05,
    consecutive: ConsecutiveOption = 1,
    batch_size: Annotated[int, typer.Option(help="Rows per update() while replaying.")] = 1000,
    calibration: CalibrationOption = 500,
    seed: StreamSeedOption = 0,
    name: Annotated[
        str, typer.Option("--stream", help="Stream name the windows are stored under.")
    ] = "stream",
    column: Annotated[str | None, typer.Option(help="Parquet column with the embeddings.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per window instead of a table.")
    ] = False,
    store: StoreOption = DEFAULT_STORE_PATH,
) -> None:
    """Replay SOURCE through a streaming monitor (sketches, bounded memory) and test each
    closed window against the reference; every window is appended to the store."""
    if batch_size < 1:
        raise InvalidParameterError(f"--batch-size must be at least 1; got {batch_size}.")
    win = parse_span(window, name="window")
    stp = None if step is None else parse_span(step, name="step")
    ref = Reference.load(reference)
    monitor = StreamMonitor(
        ref,
        window=win,
        step=stp,
        alpha=alpha,
        consecutive=consecutive,
        n_calibration=calibration,
        seed=seed,
    )
    data = read_embeddings(source, column=column)
    if monitor.mode == "time" and data.timestamps is None:
        raise InvalidParameterError(
            f"--window {window} is a duration but {source.name} has no timestamps (npz array"
            " 'timestamps' or Parquet column 'timestamp'). Use a row count, e.g. --window 1000."
        )
    x, n = data.embeddings, data.embeddings.shape[0]
    windows: list[WindowResult] = []
    with progress() as bar:
        task = bar.add_task(f"replaying {source.name}", total=n)
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)
            monitor.update(
                x[lo:hi],
                timestamps=None if data.timestamps is None else data.timestamps[lo:hi],
                ids=None if data.ids is None else data.ids[lo:hi],
            )
            windows.extend(monitor.check())
            bar.update(task, completed=hi)
        monitor.flush()
        windows.extend(monitor.check())
    target = Store(store)
    for w in windows:
        bounds = f" rows {w.start}-{w.end}" if monitor.mode == "count" else ""
        target.append_result(
            w.result,
            source=f"{source}{bounds}",
            stream=name,
            window_start=_bound(w.start),
            window_end=_bound(w.end),
        )
    if as_json:
        for w in windows:
            typer.echo(w.to_json())
        return
    out_console.print(_table(windows, title=f"embdrift stream: {source.name}", monitor=monitor))


def _table(windows: list[WindowResult], *, title: str, monitor: StreamMonitor) -> Table:
    alerts = sum(w.alert for w in windows)
    table = Table(
        title=title,
        caption=f"{len(windows)} windows, {alerts} in alert; alpha = {monitor.alpha} per window,"
        f" expected windows to a false alert {monitor.expected_windows_to_false_alert:.0f}"
        f" (reference {monitor.reference.reference_id})",
    )
    for col in ("#", "start", "end", "rows", "p-value", "drift", "alert", "strongest metric"):
        table.add_column(
            col, justify="left" if col in ("start", "end", "strongest metric") else "right"
        )
    for w in windows:
        res = w.result
        best = min(res.metrics.items(), key=lambda kv: kv[1].p_value or 1.0)
        table.add_row(
            str(w.index),
            _show(w.start),
            _show(w.end),
            str(res.n_current),
            f"{res.p_value:.4f}",
            "[red]yes[/]" if res.drifted else "no",
            "[bold red]ALERT[/]" if w.alert else "-",
            f"{best[0]} (p={best[1].p_value:.3f})",
        )
    return table
