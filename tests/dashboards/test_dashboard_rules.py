"""The shipped Prometheus files checked and unit-tested by the real promtool (Debian package)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from dashboard_promql import (
    CONTRACT,
    DASHBOARDS,
    RULES,
    alert_rules,
    contract_family,
    metric_names,
)

from support import require

PROMTOOL = "/usr/bin/promtool"
ALERTS = {
    "EmbdriftDriftSustained",
    "EmbdriftDriftWithOutcomeDegrading",
    "EmbdriftIngestStalled",
    "EmbdriftRejectedBatchesRising",
    "EmbdriftTargetDown",
}


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    require(Path(PROMTOOL).is_file(), f"{PROMTOOL} missing (Debian package 'prometheus')")
    return subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def test_promtool_check_rules() -> None:
    proc = promtool("check", "rules", RULES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in proc.stdout


def test_promtool_check_config_loads_the_rules() -> None:
    proc = promtool("check", "config", DASHBOARDS / "prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 1 rule files found" in proc.stdout


def test_promtool_test_rules() -> None:
    proc = promtool("test", "rules", "rules/embdrift.rules.test.yml", cwd=DASHBOARDS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_rule_tests_cover_every_alert_firing_and_not_firing() -> None:
    tests = yaml.safe_load((DASHBOARDS / "rules" / "embdrift.rules.test.yml").read_text())
    fired: set[str] = set()
    silent: set[str] = set()
    for group in tests["tests"]:
        for case in group.get("alert_rule_test", []):
            (fired if case["exp_alerts"] else silent).add(case["alertname"])
            for alert in case["exp_alerts"]:
                # Neighbouring series that must stay silent: not every input series fires.
                assert alert["exp_labels"], case
    names = {r["alert"] for r in alert_rules() if "alert" in r}
    assert names == ALERTS
    assert fired == ALERTS
    # "Not firing" is also shown by the silent neighbours inside each firing case; these alerts
    # also have an explicit empty expectation (pending or before the condition).
    assert silent >= ALERTS - {"EmbdriftRejectedBatchesRising"}


def test_rule_tests_fail_when_a_rule_changes(tmp_path: Path) -> None:
    """The rule tests can fail: a weakened threshold in a copy of the rules breaks them."""
    shutil.copytree(DASHBOARDS / "rules", tmp_path / "rules")
    rules = tmp_path / "rules" / "embdrift.rules.yml"
    text = rules.read_text()
    for old, new in [("for: 30m", "for: 40m"), ("> 900", "> 3600"), ("> 0.05", "> 0.5")]:
        assert text.count(old) == 1, old
        rules.write_text(text.replace(old, new))
        proc = promtool("test", "rules", "embdrift.rules.test.yml", cwd=tmp_path / "rules")
        assert proc.returncode != 0, f"rule tests still pass with {old!r} -> {new!r}"


def test_rules_select_only_contract_metrics() -> None:
    recorded = {r["record"] for r in alert_rules() if "record" in r}
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        assert names, rule
        for name in names:
            ok = contract_family(name) or name in recorded or name == "up"
            assert ok, f"{rule.get('alert') or rule.get('record')}: {name} is not in the contract"
    used = {contract_family(n) for r in alert_rules() for n in metric_names(r["expr"])}
    for family in [
        "embdrift_drift_alert",
        "embdrift_outcome_rate",
        "embdrift_last_ingest_timestamp_seconds",
        "embdrift_rejected_batches_total",
    ]:
        assert family in used and family in CONTRACT


@pytest.mark.parametrize(
    ("outcome", "direction"),
    [
        ("success_rate", "lower_is_worse"),
        ("click_through", "lower_is_worse"),
        ("no_answer_rate", "higher_is_worse"),
        ("escalation_rate", "higher_is_worse"),
        ("error_rate", "higher_is_worse"),
        ("task_failure", "higher_is_worse"),
    ],
)
def test_outcome_direction_regex_is_one_partition(outcome: str, direction: str) -> None:
    """Each outcome name lands in exactly one of the two outcome rules (Prometheus regexes are
    fully anchored RE2; Python's fullmatch is the same for this pattern)."""
    import re

    rules = [r for r in alert_rules() if r.get("alert") == "EmbdriftDriftWithOutcomeDegrading"]
    hits = []
    for rule in rules:
        found = re.findall(r'outcome(=~|!~)"([^"]+)"', rule["expr"])
        assert found and len(set(found)) == 1, rule["expr"]
        op, pattern = found[0]
        matched = re.fullmatch(pattern, outcome) is not None
        if matched == (op == "=~"):
            hits.append(rule["labels"]["direction"])
    assert hits == [direction]
