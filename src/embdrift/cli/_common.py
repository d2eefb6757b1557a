"""What every command shares: consoles, error translation, the store option."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from embdrift.errors import EmbdriftError
from embdrift.results import DriftResult
from embdrift.store import DEFAULT_STORE

__all__ = [
    "AlphaWindowOption",
    "CalibrationOption",
    "ConsecutiveOption",
    "StepOption",
    "StoreOption",
    "StreamSeedOption",
    "WindowOption",
    "err_console",
    "exits_on_error",
    "out_console",
    "progress",
    "result_table",
]

P = ParamSpec("P")
R = TypeVar("R")

#: Tables and results go to stdout; progress bars and messages to stderr, so that
#: ``--json`` output stays machine-readable.
out_console = Console()
err_console = Console(stderr=True)

# The monitor options shared by ``embdrift stream`` and ``embdrift serve``.
WindowOption = Annotated[
    str, typer.Option(help="Window: rows (1000) or a duration (30min, 1h, 1d).")
]
StepOption = Annotated[
    str | None,
    typer.Option(help="Distance between windows (divides --window); default: tumbling."),
]
AlphaWindowOption = Annotated[float, typer.Option(help="Level of each window's test.")]
ConsecutiveOption = Annotated[
    int, typer.Option(help="Drifted windows in a row that raise the alert.")
]
CalibrationOption = Annotated[int, typer.Option(help="Null replicates per window size.")]
StreamSeedOption = Annotated[int, typer.Option(help="Seed of sketches and calibration.")]

StoreOption = Annotated[
    Path,
    typer.Option("--store", help="DuckDB file that records every run.", show_default=True),
]
DEFAULT_STORE_PATH = DEFAULT_STORE


def exits_on_error(func: Callable[P, R]) -> Callable[P, R]:
    """Print an embdrift error's message (no traceback) and exit with status 2."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except EmbdriftError as exc:
            err_console.print(
                f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(code=2) from None

    return wrapper


@contextmanager
def progress() -> Iterator[Progress]:
    """A rich progress display on stderr (hidden when stderr is not a terminal)."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        yield bar


def result_table(result: DriftResult, *, title: str) -> Table:
    """The per-metric score table with the combined verdict in its caption."""
    verdict = "[bold red]DRIFT[/]" if result.drifted else "[bold green]no drift[/]"
    table = Table(
        title=title,
        caption=f"{verdict}  combined p = {result.p_value:.4f} at alpha = {result.alpha}"
        f"  (n_reference={result.n_reference}, n_current={result.n_current},"
        f" reference {result.reference_id})",
    )
    for col in ("metric", "value", "p-value", "threshold", "effect size", "drift"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for name, m in result.metrics.items():
        table.add_row(
            name,
            f"{m.value:.4g}",
            "-" if m.p_value is None else f"{m.p_value:.4f}",
            "-" if m.threshold is None else f"{m.threshold:.4g}",
            f"{m.effect_size:.3g}",
            "[red]yes[/]" if m.drifted else "no",
        )
    return table
