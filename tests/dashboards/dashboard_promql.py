"""Shared by the dashboard tests: the metric contract, the shipped files, and a small PromQL
reader that finds the metric names an expression selects."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from support import REPO

__all__ = [
    "CONTRACT",
    "DASHBOARDS",
    "GRAFANA",
    "HISTOGRAMS",
    "RULES",
    "STREAMLESS",
    "alert_rules",
    "grafana_exprs",
    "metric_names",
    "substitute",
]

DASHBOARDS = REPO / "src" / "embdrift" / "dashboards"
RULES = DASHBOARDS / "rules" / "embdrift.rules.yml"
GRAFANA = DASHBOARDS / "grafana" / "embdrift.json"

#: The metric families of /work/helpers/METRICS-CONTRACT.md (issue 7), name -> type.
CONTRACT = {
    "embdrift_drift_score": "gauge",
    "embdrift_drift_threshold": "gauge",
    "embdrift_drift_p_value": "gauge",
    "embdrift_drift_effect_size": "gauge",
    "embdrift_drift_window_drifted": "gauge",
    "embdrift_drift_alert": "gauge",
    "embdrift_new_cluster_share": "gauge",
    "embdrift_window_rows": "gauge",
    "embdrift_window_end_timestamp_seconds": "gauge",
    "embdrift_last_ingest_timestamp_seconds": "gauge",
    "embdrift_outcome_rate": "gauge",
    "embdrift_ingested_embeddings_total": "counter",
    "embdrift_ingested_batches_total": "counter",
    "embdrift_rejected_batches_total": "counter",
    "embdrift_windows_total": "counter",
    "embdrift_drift_windows_total": "counter",
    "embdrift_outcome_events_total": "counter",
    "embdrift_ingest_latency_seconds": "histogram",
}
HISTOGRAMS = {n for n, kind in CONTRACT.items() if kind == "histogram"}
#: Families without a ``stream`` label (a rejected batch may name no valid stream).
STREAMLESS = {"embdrift_rejected_batches_total"}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.:$])([A-Za-z_:][A-Za-z0-9_:]*)(?![A-Za-z0-9_:]|\s*\()")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "Inf",
    "NaN",
    "inf",
    "nan",
    "atan2",
}


def metric_names(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression (function names, label names, label
    values, keywords, numbers and durations removed).

    >>> sorted(metric_names('sum by (stream) (rate(a_total{stream=~"$stream"}[5m])) / b'))
    ['a_total', 'b']
    """
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    return {m for m in _IDENT.findall(text) if m not in _KEYWORDS}


def contract_family(name: str) -> str | None:
    """The contract family a selected series name belongs to (histogram suffixes folded)."""
    if name in CONTRACT:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name.removesuffix(suffix) in HISTOGRAMS:
            return name.removesuffix(suffix)
    return None


def substitute(expr: str, *, stream: str, metric: str = ".*", rate_interval: str = "1m") -> str:
    """A Grafana expression with its template variables replaced, as Grafana sends it."""
    return (
        expr.replace("${stream}", stream)
        .replace("$stream", stream)
        .replace("${metric}", metric)
        .replace("$metric", metric)
        .replace("$__rate_interval", rate_interval)
        .replace("$__interval", rate_interval)
        .replace("$__range", rate_interval)
    )


def grafana() -> dict[str, Any]:
    return json.loads(GRAFANA.read_text(encoding="utf-8"))


def grafana_exprs(dashboard: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(where, expr) of every panel target and annotation query of the dashboard."""
    dash = grafana() if dashboard is None else dashboard
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out.append((f"panel {panel['title']!r} target {target['refId']}", target["expr"]))
    for ann in dash["annotations"]["list"]:
        if "expr" in ann:
            out.append((f"annotation {ann['name']!r}", ann["expr"]))
    return out


def alert_rules(path: Path = RULES) -> list[dict[str, Any]]:
    """Every rule (alerting and recording) of a rules file, with its group name."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [dict(rule, group=g["name"]) for g in doc["groups"] for rule in g["rules"]]
