"""``embdrift check``: compare a current window with a saved reference."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embdrift.cli._common import (
    DEFAULT_STORE_PATH,
    StoreOption,
    exits_on_error,
    out_console,
    progress,
    result_table,
)
from embdrift.io import read_embeddings
from embdrift.reference import Reference
from embdrift.store import Store

__all__ = ["check"]


@exits_on_error
def check(
    source: Annotated[Path, typer.Argument(help="Current window: .npy, .npz or .parquet.")],
    reference: Annotated[
        Path, typer.Option("--reference", "-r", help="Reference file from 'reference build'.")
    ],
    alpha: Annotated[float, typer.Option(help="Level of every decision.")] = 0.05,
    permutations: Annotated[int, typer.Option(help="Permutations behind the p-values.")] = 500,
    seed: Annotated[int, typer.Option(help="Seed of the permutations.")] = 0,
    column: Annotated[str | None, typer.Option(help="Parquet column with the embeddings.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON (DriftResult.to_dict).")
    ] = False,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit with status 1 when drift is found.")
    ] = False,
    store: StoreOption = DEFAULT_STORE_PATH,
) -> None:
    """Score drift of a window against a reference; every run is appended to the store."""
    ref = Reference.load(reference)
    with progress() as bar:
        task = bar.add_task(f"reading {source.name}", total=None)
        data = read_embeddings(
            source, column=column, on_progress=lambda d, t: bar.update(task, completed=d, total=t)
        )
        bar.add_task(f"{permutations} permutations over {len(data.embeddings)} rows", total=None)
        result = ref.compare(data.embeddings, alpha=alpha, n_permutations=permutations, seed=seed)
    Store(store).append_result(result, source=str(source))
    if as_json:
        typer.echo(result.to_json(indent=2))
    else:
        out_console.print(result_table(result, title=f"embdrift check: {source.name}"))
    if fail_on_drift and result.drifted:
        raise typer.Exit(code=1)
