"""``embdrift demo``: the post's figures from synthetic week 0 and week 4."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embdrift.cli._common import (
    DEFAULT_STORE_PATH,
    StoreOption,
    err_console,
    exits_on_error,
    out_console,
    progress,
    result_table,
)
from embdrift.store import Store

__all__ = ["demo"]


@exits_on_error
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the figures and scores.json.")] = Path(
        "demo-output"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the synthetic weeks and the tests.")] = 0,
    store: StoreOption = DEFAULT_STORE_PATH,
) -> None:
    """Generate synthetic week 0 and week 4 (mean shift, wider spread, a new cluster at 4%),
    score the drift, write embedding-drift-pca.svg, pc1-week0.svg, pc1-week4.svg and
    scores.json, and record the run in the store."""
    from embdrift.demo import run_demo  # matplotlib only for commands that need it

    with progress() as bar:
        bar.add_task("generating weeks, fitting the reference, permutation tests", total=None)
        output = run_demo(out, seed=seed)
    Store(store).append_result(output.result, source="demo")
    out_console.print(result_table(output.result, title="embdrift demo: week 0 vs week 4"))
    for path in (*output.figures, output.scores):
        err_console.print(f"wrote {path}")
    err_console.print(f"recorded in {store}")
