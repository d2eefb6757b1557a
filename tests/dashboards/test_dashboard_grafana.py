"""The Grafana dashboard JSON against the structure Grafana expects, and its PromQL against the
metric contract; every expression also passes Prometheus's own parser (promtool)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from dashboard_promql import (
    CONTRACT,
    STREAMLESS,
    contract_family,
    grafana,
    grafana_exprs,
    metric_names,
    substitute,
)

from support import require

DS = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def dash() -> dict[str, Any]:
    return grafana()


def test_top_level(dash: dict[str, Any]) -> None:
    assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36
    assert dash["uid"] == "embdrift" and dash["title"]
    assert dash["graphTooltip"] == 1  # shared crosshair: drift and outcomes on one time axis
    assert "id" not in dash or dash["id"] is None  # importable into any Grafana


def test_variables(dash: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    stream = variables["stream"]
    assert stream["type"] == "query"
    query = stream["query"]["query"] if isinstance(stream["query"], dict) else stream["query"]
    assert query == "label_values(embdrift_ingested_embeddings_total, stream)"
    assert stream["datasource"] == DS
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"] == DS


def test_panels(dash: dict[str, Any]) -> None:
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    kinds = {"timeseries", "stat", "state-timeline"}
    occupied: set[tuple[int, int]] = set()
    for p in panels:
        assert p["type"] in kinds and p["title"], p
        assert p["datasource"] == DS, p["title"]
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0 and g["y"] >= 0, p["title"]
        xs, ys = range(g["x"], g["x"] + g["w"]), range(g["y"], g["y"] + g["h"])
        cells = {(x, y) for x in xs for y in ys}
        assert not cells & occupied, f"panel {p['title']!r} overlaps another"
        occupied |= cells
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))
        for t in p["targets"]:
            assert t["datasource"] == DS and t["expr"].strip(), p["title"]
        if "repeat" in p:
            assert p["repeat"] in {v["name"] for v in dash["templating"]["list"]}


def test_required_panels(dash: dict[str, Any]) -> None:
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    needed = [
        "embdrift_drift_score",
        "embdrift_drift_threshold",
        "embdrift_drift_p_value",
        "embdrift_drift_alert",
        "embdrift_new_cluster_share",
        "embdrift_outcome_rate",
        "embdrift_ingested_embeddings_total",
        "embdrift_rejected_batches_total",
        "histogram_quantile(0.99",
        "embdrift_ingest_latency_seconds_bucket",
        "embdrift_window_rows",
    ]
    for piece in needed:
        assert piece in exprs, piece
    # Every contract family is shown somewhere.
    used = {contract_family(n) for _, e in grafana_exprs(dash) for n in metric_names(e)}
    assert set(CONTRACT) <= used, set(CONTRACT) - used
    # The drift panel and the outcome panel share the full width, one above the other.
    by_title = {p["title"]: p["gridPos"] for p in dash["panels"]}
    drift, outcomes = by_title["Drift score / threshold (all metrics)"], by_title["Outcome rates"]
    assert drift["w"] == outcomes["w"] == 24 and outcomes["y"] == drift["y"] + drift["h"]


def test_every_expr_selects_contract_metrics_of_the_chosen_stream(dash: dict[str, Any]) -> None:
    for where, expr in grafana_exprs(dash):
        names = metric_names(expr)
        assert names, where
        if where.startswith("annotation"):
            assert names == {"ALERTS"}, where
            continue
        for name in names:
            family = contract_family(name)
            assert family is not None, f"{where}: {name} is not a contract metric"
            if family not in STREAMLESS:
                # each selector of a stream family filters by the stream variable
                assert f'{name}{{stream=~"$stream"' in expr, f"{where}: {name} ignores $stream"


def test_metric_names_reader() -> None:
    """The reader the tests above rely on, on expressions whose answer is known."""
    assert metric_names("up") == {"up"}
    assert metric_names('histogram_quantile(0.99, sum by (le) (rate(x_bucket{a="b"}[5m])))') == {
        "x_bucket"
    }
    assert metric_names("time() - a > 900") == {"a"}
    assert metric_names('a / on (s) group_left (o) b{c=~"d(e|f)"} offset 1h') == {"a", "b"}
    assert metric_names("1e3 * foo:bar:rate5m") == {"foo:bar:rate5m"}


def test_every_expr_parses_in_prometheus(dash: dict[str, Any], tmp_path: Path) -> None:
    """promtool check rules runs Prometheus's PromQL parser over each expression (as a recording
    rule), offline, after the template variables are substituted."""
    require(Path("/usr/bin/promtool").is_file(), "/usr/bin/promtool missing (package prometheus)")
    rules = [
        {"record": f"check:expr_{i}", "expr": substitute(e, stream="s")}
        for i, (_, e) in enumerate(grafana_exprs(dash))
    ]
    path = tmp_path / "exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "grafana", "rules": rules}]}))
    proc = subprocess.run(
        ["/usr/bin/promtool", "check", "rules", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # And a broken expression is refused, so the check can fail.
    path.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "g",
                        "rules": [{"record": "check:bad", "expr": "sum by (stream (rate(x[1m]))"}],
                    }
                ]
            }
        )
    )
    bad = subprocess.run(["/usr/bin/promtool", "check", "rules", str(path)], capture_output=True)
    assert bad.returncode != 0
