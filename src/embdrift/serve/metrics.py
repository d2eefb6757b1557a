"""Prometheus exposition of a :class:`~embdrift.serve.registry.StreamRegistry`.

:class:`DriftCollector` is a custom collector: at scrape time it reads each stream's
snapshot and yields gauge and counter families named as in the metric contract
(``embdrift_drift_score{stream,metric}``, ``embdrift_drift_alert{stream}``, ...). It is
registered on a :class:`prometheus_client.CollectorRegistry` that the caller passes in, never
on the global one, so an application that already serves ``/metrics`` can add embdrift's
metrics to its own registry::

    from prometheus_client import CollectorRegistry, generate_latest
    from embdrift.serve import DriftCollector, MonitorSettings, StreamRegistry

    streams = StreamRegistry(default_reference=ref, settings=MonitorSettings(window=500))
    streams.open()
    registry = CollectorRegistry()            # or the app's own registry
    DriftCollector(streams, registry=registry)
    streams.ingest("search", batch)            # wherever the app sees embeddings
    generate_latest(registry)                  # what the app's /metrics returns

:class:`ServeMetrics` adds what only the HTTP service measures: the ingest latency histogram.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from embdrift.serve.registry import StreamRegistry
from embdrift.stream.statistics import STREAM_METRICS

__all__ = ["REJECT_REASONS", "DriftCollector", "ServeMetrics"]

#: The fixed values of the ``reason`` label of ``embdrift_rejected_batches_total``.
REJECT_REASONS = (
    "invalid_body",
    "invalid_embeddings",
    "dimension_mismatch",
    "too_large",
    "unauthorized",
    "unknown_stream",
    "bad_stream_name",
    "overloaded",
    "storage",
)

#: Upper bounds (seconds) of the ingest latency buckets: fsync takes ~1-10 ms, a request that
#: closes a window also runs its test and explanation (~0.1-2 s).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class DriftCollector(Collector):
    """Gauges and counters of every stream of ``streams``, read at scrape time.

    Parameters
    ----------
    streams : StreamRegistry
        The streams to expose.
    registry : prometheus_client.CollectorRegistry, optional
        Registers the collector there when given.

    Notes
    -----
    Gauges describe the latest closed window of each stream; a stream with no closed window
    yet exposes only its counters, its alert (0) and its last ingest time. P-values and
    thresholds of the per-metric tests are those of the min-p combination (``metric=
    "combined"`` carries the window's decision p-value and alpha as its threshold).
    """

    def __init__(
        self, streams: StreamRegistry, *, registry: CollectorRegistry | None = None
    ) -> None:
        self.streams = streams
        if registry is not None:
            registry.register(self)

    def describe(self) -> list[Metric]:
        return []  # families depend on the streams present at scrape time

    def collect(self) -> Iterator[Metric]:
        def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"embdrift_{name}", doc, labels=labels)

        def counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
            return CounterMetricFamily(f"embdrift_{name}", doc, labels=labels)

        sm = ["stream", "metric"]
        score = gauge("drift_score", "Drift statistic of the latest closed window.", sm)
        threshold = gauge(
            "drift_threshold", "Critical value of the statistic at alpha (null quantile).", sm
        )
        p_value = gauge("drift_p_value", "Calibrated p-value of the latest closed window.", sm)
        effect = gauge("drift_effect_size", "Effect size of the latest closed window.", sm)
        drifted = gauge("drift_window_drifted", "1 if the latest window drifted.", ["stream"])
        alert = gauge("drift_alert", "Alert state of the stream's monitor (1/0).", ["stream"])
        share = gauge(
            "new_cluster_share",
            "Share of the reservoir rows in new regions, in the latest explained window.",
            ["stream"],
        )
        rows = gauge("window_rows", "Rows in the latest closed window.", ["stream"])
        window_end = gauge(
            "window_end_timestamp_seconds", "Unix time the latest window closed.", ["stream"]
        )
        last_ingest = gauge(
            "last_ingest_timestamp_seconds", "Unix time of the last accepted batch.", ["stream"]
        )
        rate = gauge(
            "outcome_rate", "Mean outcome over the latest closed window.", ["stream", "outcome"]
        )
        embeddings = counter("ingested_embeddings", "Embeddings accepted.", ["stream"])
        batches = counter("ingested_batches", "Batches accepted.", ["stream"])
        windows = counter("windows", "Windows closed and tested.", ["stream"])
        drift_windows = counter("drift_windows", "Windows that drifted.", ["stream"])
        events = counter("outcome_events", "Outcome values received.", ["stream", "outcome"])
        rejected = counter("rejected_batches", "Requests rejected, by reason.", ["reason"])

        for snap in self.streams.snapshots():
            s = snap.name
            alert.add_metric([s], float(snap.alert))
            embeddings.add_metric([s], float(snap.count))
            batches.add_metric([s], float(snap.batches))
            windows.add_metric([s], float(snap.windows))
            drift_windows.add_metric([s], float(snap.drift_windows))
            if snap.last_ingest is not None:
                last_ingest.add_metric([s], snap.last_ingest)
            for name, n in sorted(snap.outcome_events.items()):
                events.add_metric([s, name], float(n))
            latest = snap.latest
            if latest is None:
                continue
            result = latest.window.result
            for metric in STREAM_METRICS:
                m = result.metrics.get(metric)
                if m is None:
                    continue
                score.add_metric([s, metric], m.value)
                if m.threshold is not None:
                    threshold.add_metric([s, metric], m.threshold)
                if m.p_value is not None:
                    p_value.add_metric([s, metric], m.p_value)
                effect.add_metric([s, metric], m.effect_size)
            p_value.add_metric([s, "combined"], result.p_value)
            threshold.add_metric([s, "combined"], result.alpha)
            drifted.add_metric([s], float(result.drifted))
            rows.add_metric([s], float(result.n_current))
            window_end.add_metric([s], latest.closed_at)
            # The share of the newest window whose explanation has finished (history ends
            # with the latest window): explanations run in the background, so the latest
            # window may not have one yet.
            shares = [w.new_cluster_share for w in snap.history if w.new_cluster_share is not None]
            if shares:
                share.add_metric([s], shares[-1])
            for name, value in sorted(latest.outcome_rates.items()):
                rate.add_metric([s, name], value)
        counts = self.streams.rejections
        for reason in REJECT_REASONS:
            rejected.add_metric([reason], float(counts.get(reason, 0)))
        yield from (
            score,
            threshold,
            p_value,
            effect,
            drifted,
            alert,
            share,
            rows,
            window_end,
            last_ingest,
            rate,
            embeddings,
            batches,
            rejected,
            windows,
            drift_windows,
            events,
        )


class ServeMetrics:
    """Everything ``embdrift serve`` exposes on ``registry``: the :class:`DriftCollector` of
    ``streams`` and the ingest latency histogram
    ``embdrift_ingest_latency_seconds{stream}`` (request received to durable ack)."""

    def __init__(self, streams: StreamRegistry, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.collector = DriftCollector(streams, registry=registry)
        self.latency = Histogram(
            "embdrift_ingest_latency_seconds",
            "Time from request received to durable acknowledgement.",
            ["stream"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def observe_latency(self, stream: str, seconds: float) -> None:
        self.latency.labels(stream=stream).observe(seconds)
