"""The ``embdrift`` command line (typer + rich). Each command group lives in its own module and
is registered here, one line each."""

from __future__ import annotations

import typer

from embdrift.cli import (
    _check,
    _dashboard,
    _demo,
    _embed,
    _outcomes,
    _reference,
    _serve,
    _stream,
)

__all__ = ["app", "main"]

# Every Typer here uses click's plain help (rich_markup_mode=None): it wraps to any terminal
# width, where rich's option table cuts long option names short below ~100 columns.
app = typer.Typer(
    name="embdrift",
    help="Monitor embedding drift: see it, score it with calibrated tests, explain it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
reference_app = typer.Typer(
    help="Build frozen references.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(reference_app, name="reference")

app.command("demo")(_demo.demo)
app.command("check")(_check.check)
app.command("embed")(_embed.embed)
reference_app.command("build")(_reference.build)
app.command("stream")(_stream.stream)
app.add_typer(_outcomes.app, name="outcomes")
app.command("serve")(_serve.serve)
app.add_typer(_dashboard.app, name="dashboard")


def main() -> None:
    """Console-script entry point."""
    app()
