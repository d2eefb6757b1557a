"""The exception types of embdrift: one per kind of problem.

Each subclasses ``ValueError`` or ``TypeError`` (as scikit-learn's ``InvalidParameterError``
does), so ``except ValueError`` keeps working, and each message names the parameter, what was
expected, what arrived and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "DimensionMismatchError",
    "EmbdriftError",
    "EmbeddingTypeError",
    "FileFormatError",
    "InsufficientDataError",
    "InvalidEmbeddingsError",
    "InvalidParameterError",
    "InvalidSeriesError",
    "PrometheusError",
    "ReferenceFormatError",
    "SeriesAlignmentError",
    "StoreLockedError",
    "TimeOrderError",
    "UnknownDirectionError",
]


class EmbdriftError(Exception):
    """Base class of every error embdrift raises on purpose."""


class InvalidEmbeddingsError(EmbdriftError, ValueError):
    """Embeddings that are not a finite 2-D (rows, dimensions) array.

    Empty, 1-D or 3-D, ragged rows, NaN or inf.
    """


class EmbeddingTypeError(EmbdriftError, TypeError):
    """Embeddings whose values are not real numbers (strings, objects, complex, booleans)."""


class DimensionMismatchError(EmbdriftError, ValueError):
    """A current window whose embedding dimension differs from the reference's."""


class InsufficientDataError(EmbdriftError, ValueError):
    """Fewer rows than a metric, a split or a calibration needs."""


class InvalidParameterError(EmbdriftError, ValueError):
    """An option outside its allowed range or set."""


class FileFormatError(EmbdriftError, ValueError):
    """A file that cannot be read as embeddings: unknown suffix, unreadable, no suitable column."""


class ReferenceFormatError(EmbdriftError, ValueError):
    """A saved reference that is not an embdrift reference, or of an unsupported version."""


class StoreLockedError(EmbdriftError, RuntimeError):
    """The DuckDB store is held by another process (DuckDB allows one writer per file)."""


# --- outcome series (embdrift.outcomes) ------------------------------------------------------


class InvalidSeriesError(EmbdriftError, ValueError):
    """A time series that is not usable: empty, not 1-D, unequal lengths, NaN/inf, bad times."""


class TimeOrderError(EmbdriftError, ValueError):
    """Timestamps of a series that are not strictly increasing (out of order or duplicated)."""


class SeriesAlignmentError(EmbdriftError, ValueError):
    """Series that share no common time span, so drift and outcomes cannot be paired."""


class UnknownDirectionError(EmbdriftError, ValueError):
    """An outcome whose bad direction (up or down) is neither declared nor guessable."""


class PrometheusError(EmbdriftError, RuntimeError):
    """A Prometheus server that cannot be reached or rejects a query."""
