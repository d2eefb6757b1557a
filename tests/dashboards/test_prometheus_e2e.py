"""End to end: a real ``embdrift serve`` subprocess, scraped by a real Prometheus server (Debian
package) every second, evaluating the shipped alert rules, while this test replays a stream
with a planted drift; then every PromQL expression of the Grafana dashboard and of the rules is
run against Prometheus's HTTP API, the alerts' timing is checked, and the live page is opened in
real headless Chromium.

The rules Prometheus loads are the shipped file with production durations shortened (each
rewrite below must match exactly, so a changed rule fails here instead of being tested
half-way): ``for:`` 30m/15m/10m/5m become 2-3 s and the 15-minute ingest-stall threshold
becomes 12 s. Expressions, labels and every other threshold are the shipped ones.

Run with ``-s`` to see the figures (series scraped, seconds from planted drift to alert).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from dashboard_promql import RULES, alert_rules, grafana, grafana_exprs, substitute

from embdrift import Reference
from report.chromium_cdp import chromium_available, visit
from support import require

pytestmark = pytest.mark.integration

PROMETHEUS = "/usr/bin/prometheus"
STREAM = "e2e"
DIM = 32
WINDOW = 200
BATCH = 50
CLEAN_WINDOWS = 6
MAX_DRIFT_WINDOWS = 30
#: (shipped text, test text, expected count): production durations -> seconds.
REWRITES = [
    ("for: 30m", "for: 3s", 1),
    ("for: 15m", "for: 2s", 2),
    ("for: 10m", "for: 2s", 1),
    # Target down: 4 failed scrapes in a row. A scrape may time out (1 s) while the service
    # holds a stream's lock to test and explain a closing window (about 1 s here).
    ('up{job="embdrift"} == 0\n        for: 5m', 'up{job="embdrift"} == 0\n        for: 4s', 1),
    ("for: 5m", "for: 2s", 1),
    ("> 900", "> 12", 1),
]
DRIFT_ALERT = "EmbdriftDriftSustained"
#: Read from the live page's DOM by the DevTools protocol.
PAGE_EXPRESSIONS = {
    "streams": "[...document.querySelectorAll('section.stream')].map(e => e.dataset.stream)",
    "name": "document.querySelector('section.stream .stream-name').innerText",
    "verdict": "document.querySelector('section.stream').dataset.verdict",
    "verdict_text": "document.querySelector('section.stream .verdict').innerText",
    "alert": "document.querySelector('section.stream .alert').innerText",
    "facts": "document.querySelector('section.stream .facts').innerText",
    "svgs": "[...document.querySelectorAll('section.stream svg.chart')].map(e =>"
    " [e.classList[1], e.getBoundingClientRect().width > 100,"
    " e.querySelectorAll('polyline, circle').length])",
}
OUTCOME_ALERT = "EmbdriftDriftWithOutcomeDegrading"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


def _post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _wait(predicate: Any, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Stack:
    serve_url: str
    prom_url: str
    serve: subprocess.Popen[bytes]
    prometheus: subprocess.Popen[bytes]
    rules_path: Path
    root: Path
    started: float = 0.0
    drift_at: float = 0.0
    drift_firing_at: float = 0.0
    stopped_at: float = 0.0
    last_post: float = 0.0
    windows_to_alert: int = 0
    rejected: int = 0
    firing_seen: dict[str, float] = field(default_factory=dict)
    data_checks: dict[str, int] = field(default_factory=dict)

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        status, body = _get(f"{self.prom_url}/api/v1/query?{urllib.parse.urlencode(params)}")
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "success", (expr, answer)
        result = answer["data"]["result"]
        return result if isinstance(result, list) else [result]

    def query_range(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "1"}
        status, body = _get(f"{self.prom_url}/api/v1/query_range?{urllib.parse.urlencode(params)}")
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "success", (expr, answer)
        return list(answer["data"]["result"])

    def firing(self) -> set[str]:
        return {r["metric"]["alertname"] for r in self.query('ALERTS{alertstate="firing"}')}


def _test_rules(root: Path) -> Path:
    text = RULES.read_text(encoding="utf-8")
    for old, new, count in REWRITES:
        assert text.count(old) == count, f"{old!r} appears {text.count(old)} times, not {count}"
        text = text.replace(old, new)
    path = root / "embdrift.rules.yml"
    path.write_text(text, encoding="utf-8")
    return path


def _reference(root: Path) -> Path:
    rng = np.random.default_rng(7)
    scales = np.linspace(2.0, 0.5, DIM)
    ref = Reference.fit(rng.normal(size=(3000, DIM)) * scales, n_components=8, seed=0)
    return ref.save(root / "ref.npz")


def _batch(rng: np.random.Generator, k: int, *, drifted: bool) -> bytes:
    scales = np.linspace(2.0, 0.5, DIM)
    x = rng.normal(size=(BATCH, DIM)) * scales + (0.5 if drifted else 0.0)
    success, no_answer = (0.5, 0.3) if drifted else (0.8, 0.1)
    body = {
        "embeddings": x.round(5).tolist(),
        "ids": [f"{'d' if drifted else 'c'}{k}-{j}" for j in range(BATCH)],
        "outcomes": {
            "success_rate": (rng.random(BATCH) < success).astype(float).tolist(),
            "no_answer_rate": (rng.random(BATCH) < no_answer).astype(float).tolist(),
        },
    }
    return json.dumps(body).encode()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require(Path(PROMETHEUS).is_file(), f"{PROMETHEUS} missing (Debian package 'prometheus')")
    root = tmp_path_factory.mktemp("e2e")
    ref = _reference(root)
    serve_port, prom_port = _free_port(), _free_port()
    serve_log = open(root / "serve.log", "wb")  # noqa: SIM115 - closed in the finalizer
    serve = subprocess.Popen(
        [
            sys.executable, "-m", "embdrift", "serve",
            "--reference", f"{STREAM}={ref}",
            "--port", str(serve_port),
            "--window", str(WINDOW),
            "--calibration", "199",
            "--reservoir-size", "200",
            "--consecutive", "2",
            "--state-dir", str(root / "state"),
            "--log-level", "warning",
        ],
        stdout=serve_log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    rules = _test_rules(root)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": "embdrift",
                "scrape_interval": "1s",
                "static_configs": [{"targets": [f"127.0.0.1:{serve_port}"]}],
            }
        ],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom_log = open(root / "prometheus.log", "wb")  # noqa: SIM115 - closed in the finalizer
    prometheus = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=prom_log,
        stderr=subprocess.STDOUT,
    )
    s = Stack(
        serve_url=f"http://127.0.0.1:{serve_port}",
        prom_url=f"http://127.0.0.1:{prom_port}",
        serve=serve,
        prometheus=prometheus,
        rules_path=rules,
        root=root,
    )
    try:
        _wait(lambda: _get(f"{s.serve_url}/readyz")[0] == 200, 60, "embdrift serve", serve)
        _wait(lambda: _get(f"{s.prom_url}/-/ready")[0] == 200, 60, "prometheus", prometheus)
        _wait(lambda: s.query('up{job="embdrift"} == 1'), 30, "the first scrape", prometheus)
        s.started = time.time()
        _replay(s)
        yield s
    finally:
        for proc in (serve, prometheus):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        serve_log.close()
        prom_log.close()


def _replay(s: Stack) -> None:
    """Clean windows, then the planted mean shift (with outcomes degrading and a few bad
    batches) until the drift and outcome alerts fire; no posting after that."""
    rng = np.random.default_rng(11)
    url = f"{s.serve_url}/v1/streams/{STREAM}/embeddings"
    per_window = WINDOW // BATCH
    k = 0
    for _ in range(CLEAN_WINDOWS * per_window):
        t0 = time.monotonic()
        status, answer = _post(url, _batch(rng, k, drifted=False))
        assert status == 200, answer
        k += 1
        time.sleep(max(0.0, 0.25 - (time.monotonic() - t0)))
    s.drift_at = time.time()
    bad = [
        (url, json.dumps({"embeddings": [[0.0] * (DIM // 2)] * 3}).encode()),  # dimension
        (url, b"{not json"),  # invalid body
        (f"{s.serve_url}/v1/streams/nosuch/embeddings", _batch(rng, -1, drifted=False)),
    ]
    want = {DRIFT_ALERT, OUTCOME_ALERT, "EmbdriftRejectedBatchesRising"}
    for i in range(MAX_DRIFT_WINDOWS * per_window):
        t0 = time.monotonic()
        status, answer = _post(url, _batch(rng, k, drifted=True))
        assert status == 200, answer
        k += 1
        if i < len(bad):
            status, answer = _post(*bad[i])
            assert 400 <= status < 500, (status, answer)
            s.rejected += 1
        firing = s.firing()
        now = time.time()
        for name in firing:
            s.firing_seen.setdefault(name, now)
        if DRIFT_ALERT in firing and not s.drift_firing_at:
            s.drift_firing_at = now
            s.windows_to_alert = (i + 1) // per_window
        if want <= firing:
            break
        time.sleep(max(0.0, 0.25 - (time.monotonic() - t0)))
    s.stopped_at = s.last_post = time.time()
    assert want <= set(s.firing_seen), f"fired: {s.firing_seen}; logs in {s.root}"


def test_alerts_fire_after_the_planted_drift_and_not_before(stack: Stack) -> None:
    s = stack
    assert s.drift_at < s.drift_firing_at
    # Nothing of the drift alert (not even pending) and no drift alert state before the drift.
    before = s.query_range(f'ALERTS{{alertname="{DRIFT_ALERT}"}}', s.started, s.drift_at)
    assert before == [], before
    alert_state = s.query_range(f'embdrift_drift_alert{{stream="{STREAM}"}}', s.started, s.drift_at)
    assert alert_state and all(float(v) == 0.0 for _, v in alert_state[0]["values"])
    windows = s.query_range(f'embdrift_windows_total{{stream="{STREAM}"}}', s.started, s.drift_at)
    assert max(float(v) for _, v in windows[0]["values"]) >= CLEAN_WINDOWS - 1
    # Both outcome rules fired (success_rate fell, no_answer_rate rose), with their directions.
    fired = s.query_range(
        f'ALERTS{{alertname="{OUTCOME_ALERT}", alertstate="firing"}}', s.drift_at, s.stopped_at
    )
    got = {(r["metric"]["outcome"], r["metric"]["direction"]) for r in fired}
    assert got == {("success_rate", "lower_is_worse"), ("no_answer_rate", "higher_is_worse")}
    # The ingest-stalled alert stays silent while the stream is fed, target-down never fires.
    quiet = s.query_range('ALERTS{alertname="EmbdriftIngestStalled"}', s.started, s.stopped_at)
    assert quiet == [], (quiet, s.started, s.drift_at, s.stopped_at)
    down = s.query_range(
        'ALERTS{alertname="EmbdriftTargetDown", alertstate="firing"}', s.started, s.stopped_at
    )
    assert down == [], down
    failed = s.query(
        f'count_over_time((up{{job="embdrift"}} == 0)[{s.stopped_at - s.started:.0f}s:1s])',
        at=s.stopped_at,
    )
    failed_scrapes = int(float(failed[0]["value"][1])) if failed else 0
    series = int(float(s.query('count({__name__=~"embdrift_.*"})')[0]["value"][1]))
    print(
        f'\n[e2e] series scraped: count({{__name__=~"embdrift_.*"}}) = {series};'
        f" drift alert firing {s.drift_firing_at - s.drift_at:.1f} s after the planted drift"
        f" ({s.windows_to_alert} windows of {WINDOW} rows; for: 3s; consecutive 2);"
        f" outcome alert after {s.firing_seen[OUTCOME_ALERT] - s.drift_at:.1f} s;"
        f" rejected-batches alert after"
        f" {s.firing_seen['EmbdriftRejectedBatchesRising'] - s.drift_at:.1f} s;"
        f" scrapes timed out (1 s) during the replay: {failed_scrapes}"
    )
    assert series >= 40


def test_every_dashboard_and_rule_expression_returns_data(stack: Stack) -> None:
    s = stack
    # The service explains closed windows in a background thread and exports the new-cluster
    # share once the latest window's explanation is done: while windows close faster than
    # they are explained the gauge is absent, so wait until it has caught up.
    share = f'embdrift_new_cluster_share{{stream="{STREAM}"}}'
    at = _wait(lambda: s.query(share) and time.time(), 20, "the latest window's explanation")
    present = s.query(f"count_over_time({share}[{at - s.drift_at:.0f}s:1s])", at=at)
    print(
        f"\n[e2e] new-cluster share present in {present[0]['value'][1] if present else 0} of"
        f" {at - s.drift_at:.0f} one-second steps since the drift (explanations lag the"
        f" windows); caught up {at - s.stopped_at:.1f} s after the last batch"
    )
    dash = grafana()
    empty = []
    for where, expr in grafana_exprs(dash):
        query = substitute(expr, stream=STREAM, metric=".*", rate_interval="15s")
        if not s.query(query, at=at):
            empty.append(where)
    assert not empty, f"no data at the end of the replay: {empty}"
    # The template variables' queries (label_values(...)) as Grafana runs them.
    for var, label, want in [
        ("embdrift_ingested_embeddings_total", "stream", STREAM),
        (f'embdrift_drift_score{{stream=~"{STREAM}"}}', "metric", "mmd"),
    ]:
        params = urllib.parse.urlencode({"match[]": var})
        status, body = _get(f"{s.prom_url}/api/v1/label/{label}/values?{params}")
        assert status == 200 and want in json.loads(body)["data"], (var, body)
    # Rules: recording rules have data; alert expressions return data while their alert fires.
    for rule in alert_rules(s.rules_path):
        if "record" in rule:
            assert s.query(rule["expr"], at=at), rule["record"]
    fired_at = {name: t for name, t in s.firing_seen.items()}
    for rule in alert_rules(s.rules_path):
        name = rule.get("alert")
        if name in fired_at:
            assert s.query(rule["expr"], at=fired_at[name]) or name == OUTCOME_ALERT, name
    outcome_rules = [r for r in alert_rules(s.rules_path) if r.get("alert") == OUTCOME_ALERT]
    for rule in outcome_rules:
        assert s.query_range(rule["expr"], s.drift_at, s.stopped_at), rule["labels"]
    # Prometheus evaluated every rule without error.
    status, body = _get(f"{s.prom_url}/api/v1/rules")
    groups = json.loads(body)["data"]["groups"]
    health = [(r["name"], r["health"], r.get("lastError", "")) for g in groups for r in g["rules"]]
    assert len(health) == len(alert_rules(s.rules_path))
    assert all(h == "ok" for _, h, _ in health), health


def test_live_page_in_chromium(stack: Stack) -> None:
    require(chromium_available(), "/usr/bin/chromium is not installed")
    s = stack
    snapshot = json.loads(_get(f"{s.serve_url}/v1/streams")[1])["streams"]
    (info,) = [x for x in snapshot if x["stream"] == STREAM]
    before = info["windows"]
    # A window closes while the page is open: its self-refresh (every second) must show it.
    rng = np.random.default_rng(99)

    statuses: list[int] = []

    def feed() -> None:
        time.sleep(1.0)
        for j in range(WINDOW // BATCH):
            status, _ = _post(
                f"{s.serve_url}/v1/streams/{STREAM}/embeddings",
                _batch(rng, 10_000 + j, drifted=True),
            )
            statuses.append(status)
        s.last_post = time.time()

    feeder = threading.Thread(target=feed)
    feeder.start()
    page = visit(
        f"{s.serve_url}/?refresh=1",
        expressions=PAGE_EXPRESSIONS,
        settle=6.0,
    )
    feeder.join()
    assert statuses == [200] * (WINDOW // BATCH)
    assert page.errors == [], "\n".join(page.errors)
    assert all(u.startswith(s.serve_url) for u in page.requests), page.requests
    assert page.values["streams"] == [STREAM] and page.values["name"] == STREAM
    assert page.values["verdict"] == "drifted" and page.values["verdict_text"] == "drifted"
    assert page.values["alert"] == "ALERT"
    kinds = {k: (visible, n) for k, visible, n in page.values["svgs"]}
    assert set(kinds) == {"drift-chart", "outcome-chart", "pca-scatter"}
    assert all(visible and n > 0 for visible, n in kinds.values()), kinds
    after = json.loads(_get(f"{s.serve_url}/v1/streams")[1])["streams"][0]["windows"]
    assert after == before + 1
    assert f"of {after} windows drifted" in page.values["facts"], page.values["facts"]


def test_ingest_stalled_then_target_down(stack: Stack) -> None:
    s = stack
    stall = _wait(lambda: "EmbdriftIngestStalled" in s.firing() and time.time(), 45, "stall")
    assert s.query(
        next(
            r["expr"]
            for r in alert_rules(s.rules_path)
            if r.get("alert") == "EmbdriftIngestStalled"
        )
    )
    s.serve.terminate()
    s.serve.wait(timeout=30)
    killed = time.time()
    down = _wait(lambda: "EmbdriftTargetDown" in s.firing() and time.time(), 30, "target down")
    print(
        f"\n[e2e] ingest-stalled firing {stall - s.last_post:.1f} s after the last batch"
        f" (test threshold 12 s, for: 2s); target-down firing {down - killed:.1f} s after the"
        " service stopped"
    )
