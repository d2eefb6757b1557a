"""Streaming drift: mergeable sketches with bounded state, their calibrated null, and a monitor.

Every sketch has ``update(batch) -> self``, ``merge(other) -> self``, ``to_bytes()`` /
``from_bytes()`` (no pickle), a ``count`` and a stated error guarantee. A :class:`SketchSet`
bundles them for one :class:`~embdrift.Reference`; :class:`StreamMonitor` cuts the stream into
count or time windows and tests each against the reference with a null calibrated through the
sketches (:class:`SketchNull`). See docs/streaming.md.
"""

from __future__ import annotations

from embdrift.stream.basis import BatchFeatures, StreamBasis
from embdrift.stream.calibration import SketchNull
from embdrift.stream.monitor import StreamMonitor, WindowResult
from embdrift.stream.sketches import (
    MeanSketch,
    MomentSketch,
    ProjectionQuantiles,
    QuantileSketch,
    RFFMeanSketch,
    WeightedReservoir,
    frechet_distance,
    rank_error,
    rff_mmd2,
)
from embdrift.stream.sketchset import SketchSet
from embdrift.stream.statistics import STREAM_DECISION_METRICS, STREAM_METRICS

__all__ = [
    "STREAM_DECISION_METRICS",
    "STREAM_METRICS",
    "BatchFeatures",
    "MeanSketch",
    "MomentSketch",
    "ProjectionQuantiles",
    "QuantileSketch",
    "RFFMeanSketch",
    "SketchNull",
    "SketchSet",
    "StreamBasis",
    "StreamMonitor",
    "WeightedReservoir",
    "WindowResult",
    "frechet_distance",
    "rank_error",
    "rff_mmd2",
]
