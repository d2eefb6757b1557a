"""embdrift: monitor embedding drift in production.

See it (a PCA frozen on the reference), score it (energy, Wasserstein, MMD, KL with calibrated
p-values), and decide with one family-wise calibrated verdict.
"""

from __future__ import annotations

from embdrift.errors import (
    DimensionMismatchError,
    EmbdriftError,
    EmbeddingTypeError,
    FileFormatError,
    InsufficientDataError,
    InvalidEmbeddingsError,
    InvalidParameterError,
    ReferenceFormatError,
    StoreLockedError,
)
from embdrift.projection import FrozenPCA
from embdrift.reference import DECISION_METRICS, METRICS, Reference
from embdrift.results import DriftResult, MetricResult

__version__ = "0.1.0"

__all__ = [
    "DECISION_METRICS",
    "METRICS",
    "DimensionMismatchError",
    "DriftResult",
    "EmbdriftError",
    "EmbeddingTypeError",
    "FileFormatError",
    "FrozenPCA",
    "InsufficientDataError",
    "InvalidEmbeddingsError",
    "InvalidParameterError",
    "MetricResult",
    "Reference",
    "ReferenceFormatError",
    "StoreLockedError",
    "__version__",
]
