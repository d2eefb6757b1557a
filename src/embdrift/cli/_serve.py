"""``embdrift serve``: the drift service (HTTP ingest, /metrics, durable streams)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from embdrift.cli._common import (
    AlphaWindowOption,
    CalibrationOption,
    ConsecutiveOption,
    StepOption,
    StreamSeedOption,
    WindowOption,
    err_console,
    exits_on_error,
)
from embdrift.cli._stream import parse_span
from embdrift.errors import InvalidParameterError, MissingExtraError
from embdrift.reference import Reference

__all__ = ["parse_references", "serve"]


def parse_references(values: list[str]) -> tuple[dict[str, Reference], Reference | None]:
    """``["search=ref.npz", "default.npz"]`` -> ({"search": Reference}, default Reference)."""
    from embdrift.serve.batch import check_name

    named: dict[str, Reference] = {}
    default: Reference | None = None
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or Path(value).exists():
            if default is not None:
                raise InvalidParameterError(
                    f"Two --reference options without a stream name ({value!r} and an earlier"
                    " one); only one default reference is allowed. Name the others:"
                    " --reference NAME=PATH."
                )
            default = Reference.load(value)
            continue
        check_name(name)
        if name in named:
            raise InvalidParameterError(f"Stream {name!r} is given two --reference options.")
        named[name] = Reference.load(path)
    return named, default


@exits_on_error
def serve(
    reference: Annotated[
        list[str],
        typer.Option(
            "--reference",
            "-r",
            help="[STREAM=]PATH of a reference from 'reference build'; repeatable. With a"
            " stream name it configures that stream; without, it is the default reference of"
            " streams created on their first ingest.",
        ),
    ],
    host: Annotated[
        str, typer.Option(help="Address to bind; non-loopback needs --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 9108,
    store: Annotated[
        Path | None,
        typer.Option(help="DuckDB file receiving every closed window (held while serving)."),
    ] = None,
    state_dir: Annotated[
        Path,
        typer.Option(help="Write-ahead logs and checkpoints; restarts resume from here."),
    ] = Path(".embdrift") / "serve-state",
    window: WindowOption = "1000",
    step: StepOption = None,
    alpha: AlphaWindowOption = 0.05,
    consecutive: ConsecutiveOption = 1,
    calibration: CalibrationOption = 500,
    reservoir_size: Annotated[int, typer.Option(help="Sample rows kept per window.")] = 1000,
    seed: StreamSeedOption = 0,
    explain: Annotated[
        bool, typer.Option(help="Explain each closed window (new clusters, examples).")
    ] = True,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="EMBDRIFT_TOKEN",
            help="Bearer token required on write endpoints (at least 16 characters).",
            show_default=False,
        ),
    ] = None,
    protect_reads: Annotated[
        bool, typer.Option(help="Also require the token on /metrics, GET /v1/... and /.")
    ] = False,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body.")] = 32 << 20,
    max_rows: Annotated[int, typer.Option(help="Most rows per ingest request.")] = 10_000,
    max_streams: Annotated[int, typer.Option(help="Most streams.")] = 64,
    max_inflight: Annotated[
        int,
        typer.Option(
            help="Most write requests handled at a time; one more is refused at once with"
            " HTTP 503 and Retry-After (nothing read, nothing written).",
        ),
    ] = 16,
    checkpoint_every: Annotated[
        int, typer.Option(help="Log records between checkpoints of a stream.")
    ] = 100,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the drift service: ingest embeddings over HTTP into named streams, test each closed
    window against its reference, expose Prometheus metrics at /metrics.

    Each accepted batch is fsynced to the stream's write-ahead log before the answer, so a
    restart (even after kill -9) resumes every stream from its last checkpoint plus the log.
    Binds 127.0.0.1 by default; any other address requires --token. See docs/serve.md.

    Example:

    \b
    embdrift serve --reference search=ref.npz --window 1000 --store drift.duckdb
    """
    try:
        import uvicorn

        from embdrift.serve import MonitorSettings, ServeConfig, check_bind, create_app
        from embdrift.serve.app import prepare
        from embdrift.serve.process import cap_malloc_arenas
    except ImportError as exc:
        raise MissingExtraError(
            f"embdrift serve needs the 'serve' extra ({exc.name} is missing):"
            " pip install 'embdrift[serve]'."
        ) from None
    check_bind(host, token)
    named, default = parse_references(reference)
    config = ServeConfig(
        references=named,
        default_reference=default,
        monitor=MonitorSettings(
            window=parse_span(window, name="window"),
            step=None if step is None else parse_span(step, name="step"),
            alpha=alpha,
            consecutive=consecutive,
            n_calibration=calibration,
            reservoir_size=reservoir_size,
            seed=seed,
            explain=explain,
        ),
        state_dir=state_dir,
        store=store,
        token=token,
        protect_reads=protect_reads,
        max_body_bytes=max_body_bytes,
        max_rows=max_rows,
        max_streams=max_streams,
        max_inflight=max_inflight,
        checkpoint_every=checkpoint_every,
    )
    cap_malloc_arenas()  # before the server's threads: flat memory under load (serve/process.py)
    app = create_app(config)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s: %(name)s: %(message)s")
    prepare(app)  # store lock and state recovery fail here with their message, exit 2
    err_console.print(
        f"embdrift serve on http://{host}:{port} (streams: {sorted(named) or '-'};"
        f" default reference: {'yes' if default else 'no'}; state: {state_dir})",
        highlight=False,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
