"""``embdrift outcomes``: example data, analyze (files, DuckDB tables, the store), regions,
figures, and bad input through the command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from embdrift.cli import app
from embdrift.results import DriftResult, MetricResult
from embdrift.store import Store
from embdrift.synthetic_outcomes import simulate_outcomes

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("outcomes") / "demo-outcomes"
    res = invoke("outcomes", "example", "--out", out)
    assert res.exit_code == 0, res.output
    return out


def test_analyze_example_json_ranks_the_planted_outcomes(example):
    res = invoke(
        "outcomes",
        "analyze",
        "--drift",
        example / "drift.csv",
        "--outcomes",
        example / "outcomes.csv",
        "--bucket",
        "1h",
        "--json",
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    by_name = {o["name"]: o for o in data["outcomes"]}
    assert set(data["degraded"]) == {"success_rate", "no_answer_rate"}
    assert {o["name"] for o in data["outcomes"][:2]} == {"success_rate", "no_answer_rate"}
    assert by_name["success_rate"]["lag"] == 2 and by_name["no_answer_rate"]["lag"] == 1
    for o in data["outcomes"]:
        assert isinstance(o["degraded"], bool)
        assert o["effect"]["ci_low"] <= o["effect"]["value"] <= o["effect"]["ci_high"]
        assert 0 < o["p_value"] <= 1
    # The planted effects (synthetic_outcomes.DEFAULT_OUTCOMES) inside their intervals.
    assert (
        by_name["success_rate"]["effect"]["ci_low"]
        <= -0.03
        <= by_name["success_rate"]["effect"]["ci_high"]
    )
    assert (
        by_name["no_answer_rate"]["effect"]["ci_low"]
        <= 0.04
        <= by_name["no_answer_rate"]["effect"]["ci_high"]
    )


def test_analyze_table_and_deterministic_svg(example, tmp_path):
    paths = [tmp_path / "a.svg", tmp_path / "b.svg"]
    outputs = []
    for path in paths:
        res = invoke(
            "outcomes",
            "analyze",
            "--drift",
            example / "drift.csv",
            "--outcomes",
            example / "outcomes.csv",
            "--bucket",
            "1h",
            "--figure",
            path,
        )
        assert res.exit_code == 0, res.output
        outputs.append(res.output)
    assert "success_rate" in outputs[0] and "degraded" in outputs[0]
    assert paths[0].read_bytes() == paths[1].read_bytes()
    svg = paths[0].read_text()
    assert svg.startswith("<?xml") and "<svg" in svg
    png = tmp_path / "c.png"
    res = invoke(
        "outcomes",
        "analyze",
        "--drift",
        example / "drift.csv",
        "--outcomes",
        example / "outcomes.csv",
        "--figure",
        png,
    )
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_regions_command(example):
    res = invoke(
        "outcomes",
        "regions",
        example / "items_current.csv",
        "--reference",
        example / "items_reference.csv",
        "--outcome",
        "no_answer",
        "--json",
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    top = data["regions"][0]
    assert top["region"] == "3" and top["worse"]
    assert top["ci"][0] <= 0.31 <= top["ci"][1]
    text = invoke(
        "outcomes",
        "regions",
        example / "items_current.csv",
        "--reference",
        example / "items_reference.csv",
        "--outcome",
        "no_answer",
    )
    assert text.exit_code == 0 and "region 3:" in text.output and "in the reference" in text.output


def test_outcomes_from_a_duckdb_table(example, tmp_path):
    db = tmp_path / "metrics.duckdb"
    con = duckdb.connect(str(db))
    con.execute(
        f"CREATE TABLE product AS SELECT * FROM read_csv_auto('{example / 'outcomes.csv'}')"
    )
    con.close()
    res = invoke(
        "outcomes",
        "analyze",
        "--drift",
        example / "drift.csv",
        "--outcomes",
        db,
        "--table",
        "product",
        "--bucket",
        "1h",
        "--json",
    )
    assert res.exit_code == 0, res.output
    assert set(json.loads(res.output)["degraded"]) == {"success_rate", "no_answer_rate"}
    bad = invoke(
        "outcomes",
        "analyze",
        "--drift",
        example / "drift.csv",
        "--outcomes",
        db,
        "--table",
        "x; DROP TABLE product",
    )
    assert bad.exit_code == 2 and "letters, digits and underscores" in bad.output


def test_drift_from_the_store_with_its_decisions(tmp_path):
    sim = simulate_outcomes(1, n_days=4, spike_rate=0.04, seed=2)
    store = Store(tmp_path / "s.duckdb")
    for t, v, spike in zip(sim.times, sim.drift[0], sim.spikes[0], strict=True):
        metric = MetricResult(
            value=float(v),
            p_value=0.001 if spike else 0.5,
            threshold=0.05,
            effect_size=float(v),
            drifted=bool(spike),
        )
        result = DriftResult(
            drifted=bool(spike),
            p_value=metric.p_value,
            alpha=0.05,
            metrics={"mmd": metric},
            n_reference=100,
            n_current=100,
            reference_id="ref",
        )
        store.append_result(
            result, source="test", stream="live", window_end=datetime.fromtimestamp(t, tz=UTC)
        )
    csv = tmp_path / "outcomes.csv"
    names = list(sim.outcomes)
    rows = ["time,metric,value"] + [
        f"{datetime.fromtimestamp(t, tz=UTC).isoformat()},{n},{sim.outcomes[n][0][i]}"
        for n in names
        for i, t in enumerate(sim.times)
    ]
    csv.write_text("\n".join(rows) + "\n")
    res = invoke(
        "outcomes",
        "analyze",
        "--store",
        store.path,
        "--stream",
        "live",
        "--outcomes",
        csv,
        "--bucket",
        "1h",
        "--spikes",
        "decision",
        "--json",
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["n_spikes"] == int(sim.spikes[0].sum())
    assert data["spike_rule"] == "decision"
    assert {"success_rate", "no_answer_rate"} <= set(data["degraded"])
    empty = invoke("outcomes", "analyze", "--store", tmp_path / "none.duckdb", "--outcomes", csv)
    assert empty.exit_code == 2 and "holds no 'mmd' results" in empty.output


def test_bad_input_exits_2_with_a_message(example, tmp_path):
    unordered = tmp_path / "unordered.csv"
    lines = (example / "outcomes.csv").read_text().splitlines()
    unordered.write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")
    cases = [
        (("--outcomes", unordered), "strictly increasing"),
        (("--outcomes", tmp_path / "missing.csv"), "no such file"),
        (("--outcomes", example / "outcomes.csv", "--direction", "success_rate"), "NAME=VALUE"),
        (("--outcomes", example / "outcomes.csv", "--bucket", "soon"), "'bucket'"),
        (("--outcome", "x=up"), "needs --prometheus"),
    ]
    for extra, message in cases:
        res = invoke("outcomes", "analyze", "--drift", example / "drift.csv", *extra)
        assert res.exit_code == 2, (extra, res.output)
        assert message in res.output, (extra, res.output)
        assert "Traceback" not in res.output
    latency = tmp_path / "latency.csv"
    latency.write_text("time,metric,value\n2026-01-05T00:00:00Z,latency,1\n")
    res = invoke("outcomes", "analyze", "--drift", example / "drift.csv", "--outcomes", latency)
    assert res.exit_code == 2 and "--direction latency=up" in res.output
    nan = tmp_path / "nan.csv"
    nan.write_text("time,metric,value\n2026-01-05T00:00:00Z,ctr,1\n2026-01-05T01:00:00Z,ctr,nan\n")
    res = invoke("outcomes", "analyze", "--drift", example / "drift.csv", "--outcomes", nan)
    assert res.exit_code == 2 and "NaN" in res.output
    # Nothing listens on port 9 of 127.0.0.1 (discard): a clear message, not a traceback.
    res = invoke(
        "outcomes",
        "analyze",
        "--prometheus",
        "http://127.0.0.1:9",
        "--drift",
        "up",
        "--outcome",
        "ctr=up",
    )
    assert res.exit_code == 2 and "Cannot reach Prometheus" in res.output


def test_help_names_the_commands():
    res = invoke("outcomes", "--help")
    assert res.exit_code == 0
    for command in ("analyze", "regions", "example"):
        assert command in res.output
