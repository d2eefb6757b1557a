"""Every benchmark script answers ``--help`` with its usage instead of starting a run.

The docs tell readers to check a script's flags with ``--help``; a script that reads
``sys.argv`` by hand ignores it and starts a measurement of minutes (this happened to
``serve_ingest.py`` and ``stream_throughput.py``). Nothing is measured here.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from support import REPO

SCRIPTS = sorted(p.name for p in (REPO / "benchmarks").glob("*.py") if not p.name.startswith("_"))


def test_the_benchmark_scripts_are_found() -> None:
    assert {"run.py", "serve_ingest.py", "stream_throughput.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_usage_and_runs_nothing(script: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.lstrip().startswith("usage:"), proc.stdout[:500]
    if script in {"serve_ingest.py", "stream_throughput.py"}:
        assert "--quick" in proc.stdout
