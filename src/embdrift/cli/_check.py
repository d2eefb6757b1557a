"""``embdrift check``: compare a current window with a saved reference."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embdrift._validation import check_choice
from embdrift.cli._common import (
    DEFAULT_STORE_PATH,
    StoreOption,
    err_console,
    exits_on_error,
    out_console,
    progress,
    result_table,
)
from embdrift.cli._dask import check_on_dask
from embdrift.errors import InvalidParameterError
from embdrift.io import read_embeddings
from embdrift.reference import CALIBRATIONS, Reference
from embdrift.store import Store

__all__ = ["check"]


@exits_on_error
def check(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="SOURCE",
            help="Current window: .npy, .npz or .parquet; with --engine dask also a quoted glob"
            " ('data/day=*/part-*.parquet').",
        ),
    ],
    reference: Annotated[
        Path, typer.Option("--reference", "-r", help="Reference file from 'reference build'.")
    ],
    alpha: Annotated[float, typer.Option(help="Level of every decision.")] = 0.05,
    permutations: Annotated[
        int | None,
        typer.Option(
            help="Permutations behind the p-values (at least 49 at alpha 0.05 with the default"
            " decision metrics, so that every decision metric can move the verdict). Default:"
            " 500 on the exact path (the reference's held-out rows, half of those it was built"
            " from, and the window both at most 2,000), else 200; more at a small --alpha (999"
            " at 0.01). With --engine dask: the sketch null's replicates (default 500). Not"
            " with --calibration stored (its replicates are 'reference build"
            " --null-replicates')."
        ),
    ] = None,
    calibration: Annotated[
        str,
        typer.Option(
            help="permutation (exact, B statistics per check) or stored (the null stored by"
            " 'reference build --window-size', one statistic per check)."
        ),
    ] = "permutation",
    seed: Annotated[int, typer.Option(help="Seed of the permutations.")] = 0,
    column: Annotated[str | None, typer.Option(help="Parquet column with the embeddings.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON (DriftResult.to_dict).")
    ] = False,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit with status 1 when drift is found.")
    ] = False,
    store: StoreOption = DEFAULT_STORE_PATH,
    report: Annotated[
        Path | None,
        typer.Option(help="Also explain the drift and write a self-contained HTML report here."),
    ] = None,
    texts: Annotated[
        Path | None,
        typer.Option(help="JSONL or Parquet of id -> text: example texts in the --report."),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="local: exact permutation check in this process. dask: mergeable sketches"
            " per file on a Dask cluster, tested with the sketch null (docs/dask.md)."
        ),
    ] = "local",
    scheduler: Annotated[
        str | None,
        typer.Option(help="Dask scheduler address (tcp://host:8786); default a local cluster."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes of the local Dask cluster.")
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(help="With --engine dask: one result per time window (1h, 1d, ...)."),
    ] = None,
    timestamp_column: Annotated[
        str, typer.Option(help="Parquet column with the row timestamps, for --window.")
    ] = "timestamp",
    split_row_groups: Annotated[
        bool, typer.Option(help="With --engine dask: one task per Parquet row group.")
    ] = False,
    stream: Annotated[
        str, typer.Option("--stream", help="Stream name --window results are stored under.")
    ] = "stream",
) -> None:
    """Score drift of a window against a reference; every run is appended to the store.
    With --report, also explain what drifted (new, vanished and moved clusters with example ids
    and, with --texts, example texts) in one HTML file. With --engine dask, SOURCE's files
    are sketched on a Dask cluster and tested on the merged sketches (--permutations is then
    the number of null replicates); --window gives one result per time window."""
    # The report stack (matplotlib) loads only with the command that needs it, so that other
    # commands (embdrift serve above all) start fast.
    from embdrift.report.html import (
        check_report_inputs,
        read_texts,
        with_explanation,
        write_check_report,
    )

    check_choice(engine, name="--engine", choices=("local", "dask"))
    stored = check_choice(calibration, name="--calibration", choices=CALIBRATIONS) == "stored"
    if stored and permutations is not None:
        raise InvalidParameterError(
            "--calibration stored ranks each statistic among the replicates stored by"
            " 'reference build --null-replicates'; drop --permutations."
        )
    if engine == "dask" and stored:
        raise InvalidParameterError(
            "--engine dask tests merged sketches against their own null; drop --calibration."
        )
    if engine == "dask":
        if report is not None:
            raise InvalidParameterError(
                "--report needs the rows of the window; run it with --engine local."
            )
        check_on_dask(
            str(source),
            reference=reference,
            scheduler=scheduler,
            workers=workers,
            window=window,
            timestamp_column=timestamp_column,
            stream=stream,
            alpha=alpha,
            calibration=permutations,
            seed=seed,
            column=column,
            split_row_groups=split_row_groups,
            as_json=as_json,
            fail_on_drift=fail_on_drift,
            store=store,
        )
        return
    if window is not None or scheduler is not None:
        raise InvalidParameterError("--window and --scheduler need --engine dask.")
    if texts is not None and report is None:
        raise InvalidParameterError("--texts only feeds the HTML report; add --report FILE.")
    text_table = read_texts(texts) if texts is not None else None
    ref = Reference.load(reference)
    with progress() as bar:
        task = bar.add_task(f"reading {source.name}", total=None)
        data = read_embeddings(
            source, column=column, on_progress=lambda d, t: bar.update(task, completed=d, total=t)
        )
        null = "the stored null" if stored else "permutation test"
        bar.add_task(f"{null} over {len(data.embeddings)} rows", total=None)
        window_texts = check_report_inputs(data, text_table)
        if stored:
            result = ref.compare(data.embeddings, alpha=alpha, seed=seed, calibration="stored")
        else:
            result = ref.compare(
                data.embeddings, alpha=alpha, n_permutations=permutations, seed=seed
            )
        if report is not None:
            bar.add_task("explaining what drifted", total=None)
            result = with_explanation(result, ref, data, seed=seed)
    Store(store).append_result(result, source=str(source))
    if report is not None:
        path = write_check_report(report, result, ref, data, window_texts, store, str(source))
        err_console.print(f"wrote {path}")
    if as_json:
        typer.echo(result.to_json(indent=2))
    else:
        out_console.print(result_table(result, title=f"embdrift check: {source.name}"))
    if fail_on_drift and result.drifted:
        raise typer.Exit(code=1)
