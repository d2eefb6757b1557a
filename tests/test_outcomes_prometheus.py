"""``embdrift outcomes analyze --prometheus``: range queries against a real Prometheus server
(Debian package) on 127.0.0.1, holding series backfilled with
``promtool tsdb create-blocks-from openmetrics``."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from datetime import UTC, datetime

import numpy as np
import pytest
from tests.conftest import require
from typer.testing import CliRunner

from embdrift.cli import app
from embdrift.errors import InvalidParameterError, PrometheusError
from embdrift.outcome_sources import prometheus_query_range, prometheus_series
from embdrift.synthetic_outcomes import simulate_outcomes

runner = CliRunner()
METRICS = {
    "success_rate": "app_success_rate",
    "no_answer_rate": "app_no_answer_rate",
    "click_through": "app_click_through",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    require(
        shutil.which("prometheus") is not None and shutil.which("promtool") is not None,
        "prometheus/promtool not installed (Debian package 'prometheus')",
    )
    root = tmp_path_factory.mktemp("prom")
    sim = simulate_outcomes(1, n_days=14, seed=0)
    # Shift the planted series to end an hour ago (inside the default retention).
    end = (time.time() // 3600 - 1) * 3600
    times = sim.times - sim.times[-1] + end
    lines = []
    families = {"embdrift_drift_score": sim.drift[0]}
    families.update({METRICS[n]: sim.outcomes[n][0] for n in METRICS})
    families["app_requests_rate"] = sim.outcomes["click_through"][0]
    for name, values in families.items():
        lines += [f"# HELP {name} planted test series.", f"# TYPE {name} gauge"]
        if name == "app_requests_rate":  # two series: the client must refuse to guess
            for region in ("eu", "us"):
                lines += [
                    f'{name}{{region="{region}"}} {float(v)!r} {t:.0f}'
                    for t, v in zip(times, values, strict=True)
                ]
        else:
            lines += [f"{name} {float(v)!r} {t:.0f}" for t, v in zip(times, values, strict=True)]
    lines.append("# EOF")
    source = root / "series.om"
    source.write_text("\n".join(lines) + "\n")
    data = root / "data"
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q", str(source), str(data)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    config = root / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1h\n")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=60d",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail("prometheus did not become ready within 60 s")
            time.sleep(0.3)
        yield {"url": url, "sim": sim, "times": times}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_range_query_returns_the_backfilled_samples(prometheus):
    times, sim = prometheus["times"], prometheus["sim"]
    s = prometheus_series(
        prometheus["url"],
        "app_success_rate",
        name="success_rate",
        start=times[0],
        end=times[-1],
        step=3600.0,
    )
    assert np.array_equal(s.time, times)
    assert np.allclose(s.value, sim.outcomes["success_rate"][0], rtol=0, atol=1e-12)
    # Chunked: a 1-minute step over 14 days is ~20,000 points, above Prometheus' 11,000 cap.
    found = prometheus_query_range(
        prometheus["url"], "embdrift_drift_score", start=times[0], end=times[-1], step=60.0
    )
    assert len(found) == 1
    t, v = found[0][1], found[0][2]
    # Prometheus looks back 5 minutes for the latest sample: six 1-minute steps per hourly
    # sample (one for the last), each carrying that sample's value, over three requests.
    assert t.size == 6 * (times.size - 1) + 1
    owner = np.searchsorted(times, t, side="right") - 1
    assert np.all(t - times[owner] <= 300)
    assert np.allclose(v, sim.drift[0][owner], rtol=0, atol=1e-12)


def test_cli_analysis_fed_by_prometheus(prometheus):
    times = prometheus["times"]
    args = [
        "outcomes",
        "analyze",
        "--prometheus",
        prometheus["url"],
        "--drift",
        "embdrift_drift_score",
        "--start",
        datetime.fromtimestamp(times[0], tz=UTC).isoformat(),
        "--end",
        str(times[-1]),
        "--step",
        "1h",
        "--bucket",
        "1h",
        "--json",
    ]
    for name, metric in METRICS.items():
        args += ["--outcome", f"{name}={metric}"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    by_name = {o["name"]: o for o in data["outcomes"]}
    assert set(data["degraded"]) == {"success_rate", "no_answer_rate"}
    assert by_name["success_rate"]["lag"] == 2 and by_name["no_answer_rate"]["lag"] == 1
    assert not by_name["click_through"]["degraded"]
    assert data["n_buckets"] == times.size


def test_prometheus_errors_are_clear(prometheus):
    times = prometheus["times"]
    kw = {"start": times[0], "end": times[-1], "step": 3600.0}
    with pytest.raises(PrometheusError, match="rejected the query"):
        prometheus_series(prometheus["url"], "sum(", name="x", **kw)
    with pytest.raises(InvalidParameterError, match=r"returned 2 series.*avg\("):
        prometheus_series(prometheus["url"], "app_requests_rate", name="x", **kw)
    with pytest.raises(ValueError, match="no samples"):
        prometheus_series(prometheus["url"], "does_not_exist", name="x", **kw)
    with pytest.raises(InvalidParameterError, match="http"):
        prometheus_series("file:///etc/passwd", "up", name="x", **kw)
    res = runner.invoke(
        app,
        [
            "outcomes",
            "analyze",
            "--prometheus",
            prometheus["url"],
            "--drift",
            "sum(",
            "--outcome",
            "ctr=app_click_through",
        ],
    )
    assert res.exit_code == 2 and "rejected the query" in res.output
