"""``embdrift dashboard export``: write the Prometheus and Grafana files shipped with embdrift.

The files live in the package (``embdrift/dashboards/``, the repository's ``dashboards/`` is a
link to it), so a pip-installed embdrift writes exactly what the repository tests.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated

import typer

from embdrift.cli._common import err_console, exits_on_error
from embdrift.errors import InvalidParameterError

__all__ = ["DASHBOARD_FILES", "app", "dashboard_files", "export", "export_dashboards"]

#: The shipped files, relative to the dashboards folder.
DASHBOARD_FILES = (
    "prometheus.yml",
    "rules/embdrift.rules.yml",
    "rules/embdrift.rules.test.yml",
    "grafana/embdrift.json",
)

app = typer.Typer(
    help="Prometheus scrape config, alert rules and the Grafana dashboard.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _root() -> Traversable:
    return files("embdrift").joinpath("dashboards")


def dashboard_files() -> dict[str, bytes]:
    """The shipped dashboard files: relative path -> content."""
    root = _root()
    out: dict[str, bytes] = {}
    for rel in DASHBOARD_FILES:
        node = root
        for part in rel.split("/"):
            node = node.joinpath(part)
        out[rel] = node.read_bytes()
    return out


def export_dashboards(out: Path, *, force: bool = False) -> list[Path]:
    """Write the dashboard files under ``out`` (same relative layout); return the paths.

    A file that exists with other content (an edited copy) is left alone and the export stops
    before writing anything, unless ``force``. Identical files are rewritten harmlessly.
    """
    content = dashboard_files()
    targets = {rel: out / rel for rel in content}
    for rel, path in targets.items():
        if path.is_dir():
            raise InvalidParameterError(
                f"--out {out}: {path} is a folder, where the file {rel} goes. Choose another --out."
            )
        if not force and path.exists() and path.read_bytes() != content[rel]:
            raise InvalidParameterError(
                f"--out {out} already holds a different {rel} (edited?). Pass --force to"
                " overwrite it, or choose another --out."
            )
    written = []
    for rel, path in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content[rel])
        written.append(path)
    return written


@exits_on_error
def export(
    out: Annotated[
        Path, typer.Option("--out", help="Folder to write into (created if missing).")
    ] = Path("dashboards"),
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite files that differ from the shipped ones.")
    ] = False,
) -> None:
    """Write prometheus.yml (scrape config for embdrift serve on 127.0.0.1:9108),
    rules/embdrift.rules.yml (alert and recording rules), rules/embdrift.rules.test.yml (their
    promtool unit tests) and grafana/embdrift.json (the Grafana dashboard) into --out, then
    import the JSON in Grafana. See docs/dashboards.md. Then run:

    \b
    prometheus --config.file=OUT/prometheus.yml
    """
    for path in export_dashboards(out, force=force):
        err_console.print(f"wrote {path}")


app.command("export")(export)
