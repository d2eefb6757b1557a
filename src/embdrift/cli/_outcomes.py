"""``embdrift outcomes``: when drift spikes, which product metrics degrade?

``analyze`` pairs a drift series (a file, the store, or Prometheus) with outcome series and
prints the ranking; ``regions`` reports per-item outcome rates per drifted region; ``example``
writes demo data that the other two read.
"""

from __future__ import annotations

import time as _time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from embdrift.cli._common import DEFAULT_STORE_PATH, StoreOption, exits_on_error, out_console
from embdrift.errors import InvalidParameterError
from embdrift.outcome_sources import (
    drift_from_store,
    prometheus_series,
    read_columns,
    read_series_table,
)
from embdrift.outcomes import (
    OutcomesResult,
    RegionReport,
    Series,
    analyze,
    parse_duration,
    region_rates,
    to_unix_seconds,
)

__all__ = [
    "analyze_command",
    "app",
    "example_command",
    "ranking_table",
    "regions_command",
    "regions_table",
]

app = typer.Typer(
    help="Pair drift with product outcomes: which metrics degrade when drift spikes.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _pairs(items: list[str], *, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, rest = item.partition("=")
        if not sep or not name.strip() or not rest.strip():
            raise InvalidParameterError(
                f"{option} must look like NAME=VALUE; got {item!r}. Example: {option}"
                " no_answer_rate=up"
                if option == "--direction"
                else f"{option} must look like NAME=VALUE; got {item!r}."
            )
        out[name.strip()] = rest.strip()
    return out


def _time_option(value: str | None, *, name: str, default: float) -> float:
    if value is None:
        return default
    if value == "now":
        return _time.time()
    try:
        return float(value)
    except ValueError:
        return float(to_unix_seconds(np.array([value]), name=f"--{name}")[0])


def _pick(series: dict[str, Series], metric: str | None, *, what: str) -> Series:
    if metric is not None:
        if metric not in series:
            raise InvalidParameterError(
                f"The {what} file has no metric {metric!r}; it has {sorted(series)}."
            )
        return series[metric]
    if len(series) == 1:
        return next(iter(series.values()))
    raise InvalidParameterError(
        f"The {what} file holds several metrics {sorted(series)}; choose one with --drift-metric."
    )


def ranking_table(result: OutcomesResult) -> Table:
    """The ranking as a rich table, most degraded first."""
    level = f"{100 * (1 - result.alpha):g}%"
    table = Table(
        title="embdrift outcomes: which metrics degrade when drift spikes",
        caption=(
            f"{int(result.spikes.sum())} spike bucket(s) of {result.times.size}"
            f" ({result.bucket_seconds:g} s each, rule {result.spike_rule});"
            f" p-values: {result.n_permutations} block permutations of the spike episodes, lags"
            f" 0..{result.max_lag} searched inside each, {result.correction}-adjusted"
            f" across outcomes at alpha = {result.alpha}. ↑ higher is worse, ↓ lower is worse;"
            " lag in buckets"
        ),
    )
    table.add_column("#", justify="right")
    table.add_column("outcome", no_wrap=True)
    table.add_column(f"effect [{level} CI]", justify="right", no_wrap=True)
    table.add_column("lag", justify="right")
    table.add_column("p", justify="right", no_wrap=True)
    table.add_column("degraded", justify="right")
    for i, e in enumerate(result.ranking, start=1):
        arrow = "↑" if e.bad_direction == "up" else "↓"
        if e.status != "ok" or e.effect is None:
            table.add_row(str(i), f"{e.name} {arrow}", f"[dim]{e.status}[/]", "", "", "no")
            continue
        table.add_row(
            str(i),
            f"{e.name} {arrow}",
            f"{e.effect:+.2g} [{e.ci_low:+.2g}, {e.ci_high:+.2g}]",
            str(e.lag),
            f"{e.p_value:.2g}",
            "[bold red]yes[/]" if e.degraded else "no",
        )
    return table


@exits_on_error
def analyze_command(
    drift: Annotated[
        str | None,
        typer.Option(
            help="Drift series: a CSV/Parquet/DuckDB file (columns time, metric, value[,"
            " drifted]) or, with --prometheus, a PromQL query. Default: the store."
        ),
    ] = None,
    drift_metric: Annotated[
        str | None, typer.Option(help="Metric of the drift file or store to use (store: mmd).")
    ] = None,
    stream: Annotated[str, typer.Option(help="Store stream of the drift series.")] = "batch",
    outcomes: Annotated[
        list[Path] | None,
        typer.Option(help="Outcome file(s): CSV/Parquet/DuckDB with time, metric, value[, count]."),
    ] = None,
    table: Annotated[str | None, typer.Option(help="Table name inside DuckDB files.")] = None,
    prometheus: Annotated[
        str | None, typer.Option(help="Prometheus URL; --drift and --outcome are then PromQL.")
    ] = None,
    outcome: Annotated[
        list[str] | None, typer.Option(help="With --prometheus: NAME=PROMQL, repeatable.")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(help="Prometheus range start (ISO 8601 or Unix s; default end-7d)."),
    ] = None,
    end: Annotated[str | None, typer.Option(help="Prometheus range end (default now).")] = None,
    step: Annotated[
        str | None, typer.Option(help="Prometheus query step (default the bucket, else 5min).")
    ] = None,
    direction: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=up (higher is worse) or NAME=down; repeatable. Names with"
            " success/click/ctr/satisfaction or no_answer/escalation are known."
        ),
    ] = None,
    bucket: Annotated[
        str | None, typer.Option(help="Common time bucket, e.g. 1h (default: coarsest sampling).")
    ] = None,
    max_lag: Annotated[int, typer.Option(help="Largest lag searched, in buckets.")] = 6,
    alpha: Annotated[float, typer.Option(help="Level of decisions; intervals 1-alpha.")] = 0.05,
    k: Annotated[float, typer.Option(help="Spike rule: median + k * robust sd.")] = 3.0,
    spikes: Annotated[
        str, typer.Option(help="Spike rule: mad or decision (stored drift decisions).")
    ] = "mad",
    season: Annotated[
        str, typer.Option(help="Seasonal period removed from outcomes, or 'none'.")
    ] = "1d",
    correction: Annotated[str, typer.Option(help="minp, holm or none.")] = "minp",
    permutations: Annotated[
        int, typer.Option(help="Permutations of the spike episodes behind the p-values.")
    ] = 999,
    seed: Annotated[int, typer.Option(help="Seed of the permutations.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    figure: Annotated[
        Path | None, typer.Option(help="Write the figure here (.svg or .png).")
    ] = None,
    store: StoreOption = DEFAULT_STORE_PATH,
) -> None:
    """Which outcomes degrade when drift spikes: ranking, effects with intervals, p-values, lags.

    Example:

    \b
    embdrift outcomes example --out demo-outcomes
    embdrift outcomes analyze --drift demo-outcomes/drift.csv \\
        --outcomes demo-outcomes/outcomes.csv --bucket 1h --figure demo-outcomes/outcomes.svg
    """
    directions = _pairs(direction or [], option="--direction")
    if prometheus is not None:
        if drift is None or not outcome:
            raise InvalidParameterError(
                "With --prometheus, give the drift query (--drift 'PROMQL') and at least one"
                " --outcome 'name=PROMQL'."
            )
        t_end = _time_option(end, name="end", default=_time.time())
        t_start = _time_option(start, name="start", default=t_end - 7 * 86400.0)
        step_s = parse_duration(step or bucket or "5min", name="step")
        d_series = prometheus_series(
            prometheus, drift, name="drift", start=t_start, end=t_end, step=step_s
        )
        o_series = {
            name: prometheus_series(prometheus, q, name=name, start=t_start, end=t_end, step=step_s)
            for name, q in _pairs(outcome, option="--outcome").items()
        }
    else:
        if outcome:
            raise InvalidParameterError(
                "--outcome NAME=PROMQL needs --prometheus URL; for files use --outcomes PATH."
            )
        if not outcomes:
            raise InvalidParameterError("Give outcome series with --outcomes PATH (repeatable).")
        if drift is None:
            d_series = drift_from_store(store, stream=stream, metric=drift_metric or "mmd")
        else:
            d_series = _pick(
                read_series_table(Path(drift), table=table), drift_metric, what="drift"
            )
        o_series = {}
        for path in outcomes:
            for name, s in read_series_table(path, table=table).items():
                if name in o_series:
                    raise InvalidParameterError(
                        f"Outcome {name!r} appears in more than one --outcomes file."
                    )
                o_series[name] = s
    result = analyze(
        d_series,
        o_series,
        bucket=bucket,
        directions=directions,
        alpha=alpha,
        max_lag=max_lag,
        spikes=spikes,
        k=k,
        season=None if season.lower() == "none" else season,
        correction=correction,
        n_permutations=permutations,
        seed=seed,
    )
    if figure is not None:
        from embdrift.report.outcomes_figure import outcomes_figure
        from embdrift.report.plots import save_figure

        save_figure(outcomes_figure(result), figure)
    if as_json:
        typer.echo(result.to_json(indent=2))
        return
    out_console.print(ranking_table(result))
    for note in result.notes:
        out_console.print(f"[dim]note: {note}[/]")
    if figure is not None:
        out_console.print(f"figure: {figure}")


def regions_table(report: RegionReport) -> Table:
    """Per-region rates against the reference as a rich table."""
    pct = report.kind == "rate"

    def fmt(v: float) -> str:
        return f"{100 * v:.1f}%" if pct else f"{v:.4g}"

    level = f"{100 * (1 - report.alpha):g}%"
    table = Table(
        title=f"{report.name} {report.kind} per region (worse if {report.bad_direction})",
        caption=(
            f"reference: {fmt(report.reference_rate)} [{fmt(report.reference_low)},"
            f" {fmt(report.reference_high)}] over {report.reference_n} items; worse ="
            f" Holm-adjusted one-sided p <= {report.alpha}"
        ),
    )
    for col in (
        "region",
        "items",
        "share",
        report.kind,
        f"{level} interval",
        "vs reference",
        "p (Holm)",
        "worse",
    ):
        table.add_column(col, justify="left" if col == "region" else "right")
    for r in report.regions:
        table.add_row(
            r.region,
            str(r.n),
            f"{100 * r.share:.1f}%",
            fmt(r.rate),
            f"[{fmt(r.ci_low)}, {fmt(r.ci_high)}]",
            f"{r.difference * (100 if pct else 1):+.3g}{' pts' if pct else ''}",
            f"{r.p_adjusted:.3g}",
            "[bold red]yes[/]" if r.worse else "no",
        )
    return table


@exits_on_error
def regions_command(
    current: Annotated[
        Path, typer.Argument(metavar="CURRENT", help="Current items: CSV/Parquet/DuckDB table.")
    ],
    reference: Annotated[Path, typer.Option(help="Reference items with the same outcome.")],
    outcome: Annotated[str, typer.Option(help="Outcome column (0/1 or numbers).")],
    region_column: Annotated[str, typer.Option(help="Region label column of current items.")] = (
        "region"
    ),
    direction: Annotated[
        str | None, typer.Option(help="up (higher is worse) or down; guessed from the name.")
    ] = None,
    table: Annotated[str | None, typer.Option(help="Table name inside DuckDB files.")] = None,
    alpha: Annotated[float, typer.Option(help="Interval level 1-alpha and test level.")] = 0.05,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Outcome rate per drifted region (e.g. a new cluster) vs the reference, with intervals.

    Example:

    \b
    embdrift outcomes regions demo-outcomes/items_current.csv \\
        --reference demo-outcomes/items_reference.csv --outcome no_answer
    """
    cur = read_columns(current, [region_column, outcome], table=table)
    ref = read_columns(reference, [outcome], table=table)
    report = region_rates(
        cur[region_column],
        cur[outcome],
        ref[outcome],
        name=outcome,
        direction=direction,
        alpha=alpha,
    )
    if as_json:
        typer.echo(report.to_json(indent=2))
        return
    out_console.print(regions_table(report))
    for line in report.describe():
        out_console.print(line, highlight=False)


@exits_on_error
def example_command(
    out: Annotated[Path, typer.Option(help="Folder for the example files.")] = Path(
        "demo-outcomes"
    ),
    days: Annotated[int, typer.Option(help="Days of hourly series.")] = 14,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic data.")] = 0,
) -> None:
    """Write example data with a planted truth: drift.csv, outcomes.csv (success_rate drops
    2 h and no_answer_rate rises 1 h after each drift spike; click_through and
    escalation_rate do not react), items_current.csv and items_reference.csv."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from embdrift.synthetic_outcomes import simulate_items, simulate_outcomes

    sim = simulate_outcomes(1, n_days=days, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    stamps = pa.array((sim.times * 1e6).astype(np.int64), type=pa.timestamp("us", tz="UTC"))
    t_len = sim.times.size
    pacsv.write_csv(
        pa.table({"time": stamps, "metric": ["mmd"] * t_len, "value": sim.drift[0]}),
        out / "drift.csv",
    )
    names = list(sim.outcomes)
    pacsv.write_csv(
        pa.table(
            {
                "time": pa.concat_arrays([stamps] * len(names)),
                "metric": [n for n in names for _ in range(t_len)],
                "value": np.concatenate([sim.outcomes[n][0] for n in names]),
            }
        ),
        out / "outcomes.csv",
    )
    regions, current, reference = simulate_items(seed=seed)
    pacsv.write_csv(pa.table({"region": regions, "no_answer": current}), out / "items_current.csv")
    pacsv.write_csv(pa.table({"no_answer": reference}), out / "items_reference.csv")
    out_console.print(
        f"wrote drift.csv, outcomes.csv, items_current.csv, items_reference.csv to {out}"
    )


app.command("analyze")(analyze_command)
app.command("regions")(regions_command)
app.command("example")(example_command)
