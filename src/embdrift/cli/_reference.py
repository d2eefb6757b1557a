"""``embdrift reference build``: fit and save a frozen reference."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embdrift.cli._common import err_console, exits_on_error, out_console, progress
from embdrift.io import read_embeddings
from embdrift.reference import Reference

__all__ = ["build"]


@exits_on_error
def build(
    source: Annotated[
        Path, typer.Argument(metavar="SOURCE", help="Reference window: .npy, .npz or .parquet.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the reference.")],
    seed: Annotated[int, typer.Option(help="Seed of the fit/test split.")] = 0,
    components: Annotated[int, typer.Option(help="Top-k PCA components.")] = 10,
    fit_fraction: Annotated[
        float, typer.Option(help="Share of rows that fit PCA, bandwidth and bins.")
    ] = 0.5,
    column: Annotated[str | None, typer.Option(help="Parquet column with the embeddings.")] = None,
    window_size: Annotated[
        list[int] | None,
        typer.Option(
            help="Store a null for windows of this many rows (repeatable), so 'embdrift check"
            " --calibration stored' costs one statistic."
        ),
    ] = None,
    null_replicates: Annotated[int, typer.Option(help="Null replicates per --window-size.")] = 500,
) -> None:
    """Fit a reference on a window of embeddings and save it (npz + JSON, no pickle)."""
    with progress() as bar:
        task = bar.add_task(f"reading {source.name}", total=None)
        data = read_embeddings(
            source, column=column, on_progress=lambda d, t: bar.update(task, completed=d, total=t)
        )
        sizes = window_size or []
        stored = f", {null_replicates} null replicates per window size" if sizes else ""
        bar.add_task(f"fitting the reference{stored}", total=None)
        reference = Reference.fit(
            data.embeddings,
            seed=seed,
            n_components=components,
            fit_fraction=fit_fraction,
            window_sizes=sizes,
            n_calibration=null_replicates,
        )
        reference.save(output)
    out_console.print(reference.reference_id)
    err_console.print(
        f"wrote {output}: {reference!r} from {data.embeddings.shape[0]} rows of {source}"
    )
