"""The drift service: HTTP ingest, durable streams, Prometheus metrics (``embdrift serve``).

:func:`create_app` builds the FastAPI app from a :class:`ServeConfig`; its state is a
:class:`StreamRegistry` of named :class:`~embdrift.stream.StreamMonitor` streams, each with a
write-ahead log and checkpoints (:mod:`embdrift.serve.wal`), exposed to Prometheus by
:class:`DriftCollector` (usable in-process on an application's own registry). Needs the
``serve`` extra (``pip install embdrift[serve]``). See docs/serve.md.
"""

from __future__ import annotations

from embdrift.serve.app import create_app
from embdrift.serve.auth import Auth, check_bind
from embdrift.serve.batch import Batch, OutcomeEvents
from embdrift.serve.config import ServeConfig
from embdrift.serve.metrics import DriftCollector, ServeMetrics
from embdrift.serve.registry import (
    IngestReceipt,
    MonitorSettings,
    StreamRegistry,
    StreamSnapshot,
    WindowSummary,
)
from embdrift.serve.sink import StoreSink
from embdrift.serve.wal import WriteAheadLog

__all__ = [
    "Auth",
    "Batch",
    "DriftCollector",
    "IngestReceipt",
    "MonitorSettings",
    "OutcomeEvents",
    "ServeConfig",
    "ServeMetrics",
    "StoreSink",
    "StreamRegistry",
    "StreamSnapshot",
    "WindowSummary",
    "WriteAheadLog",
    "check_bind",
    "create_app",
]
