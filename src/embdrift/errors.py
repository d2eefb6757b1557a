"""The exception types of embdrift: one per kind of problem.

Each subclasses ``ValueError`` or ``TypeError`` (as scikit-learn's ``InvalidParameterError``
does), so ``except ValueError`` keeps working, and each message names the parameter, what was
expected, what arrived and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "BadStreamNameError",
    "DimensionMismatchError",
    "EmbdriftError",
    "EmbeddingTypeError",
    "FileFormatError",
    "IdMismatchError",
    "IncompatibleSketchError",
    "InflightLimitError",
    "InsufficientDataError",
    "InvalidBodyError",
    "InvalidEmbeddingsError",
    "InvalidParameterError",
    "InvalidSeriesError",
    "MissingExtraError",
    "OverloadedError",
    "PayloadTooLargeError",
    "PrometheusError",
    "ReferenceFormatError",
    "SeriesAlignmentError",
    "SketchFormatError",
    "StateFormatError",
    "StorageError",
    "StoreLockedError",
    "TimestampOrderError",
    "UnknownDirectionError",
    "UnauthorizedError",
    "UnknownStreamError",
    "UnsafeBindError",
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


class IdMismatchError(EmbdriftError, ValueError):
    """Ids of two inputs that should describe the same rows but do not (e.g. a texts file
    that lacks ids of the embeddings window)."""


class MissingExtraError(EmbdriftError, ImportError):
    """A feature whose optional dependencies (a pip extra) are not installed."""


class ReferenceFormatError(EmbdriftError, ValueError):
    """A saved reference that is not an embdrift reference, or of an unsupported version."""


class StoreLockedError(EmbdriftError, RuntimeError):
    """The DuckDB store is held by another process (DuckDB allows one writer per file)."""


# ---------------------------------------------------------------------- streaming (issue 5)
class IncompatibleSketchError(EmbdriftError, ValueError):
    """A merge of sketches built for different references, bases or sizes (k, capacity)."""


class SketchFormatError(EmbdriftError, ValueError):
    """Bytes that are not a serialised embdrift sketch or monitor state of a supported version."""


class TimestampOrderError(EmbdriftError, ValueError):
    """Timestamps that go back in time (within a batch, against what a monitor already saw) or,
    for series that need strictly increasing times, repeat."""


# --- outcome series (embdrift.outcomes) ------------------------------------------------------


class InvalidSeriesError(EmbdriftError, ValueError):
    """A time series that is not usable: empty, not 1-D, unequal lengths, NaN/inf, bad times."""


class SeriesAlignmentError(EmbdriftError, ValueError):
    """Series that share no common time span, so drift and outcomes cannot be paired."""


class UnknownDirectionError(EmbdriftError, ValueError):
    """An outcome whose bad direction (up or down) is neither declared nor guessable."""


class PrometheusError(EmbdriftError, RuntimeError):
    """A Prometheus server that cannot be reached or rejects a query."""


# --- the drift service (embdrift serve, issue 7) ----------------------------------------------


class InvalidBodyError(EmbdriftError, ValueError):
    """An HTTP request body that cannot be read: malformed JSON or ``.npy``, missing or
    mistyped fields, unsupported content type, lengths that disagree."""


class PayloadTooLargeError(EmbdriftError, ValueError):
    """A request body or a batch above the service's configured size or row limit."""


class BadStreamNameError(EmbdriftError, ValueError):
    """A stream or outcome name outside ``^[a-z0-9][a-z0-9_-]{0,63}$`` (it becomes a
    Prometheus label value and a folder name)."""


class UnknownStreamError(EmbdriftError, ValueError):
    """A stream that is not configured, when no default reference creates streams on first
    ingest."""


class UnauthorizedError(EmbdriftError, PermissionError):
    """A request to the service without the right bearer token (HTTP 401)."""


class OverloadedError(EmbdriftError, RuntimeError):
    """The service cannot take the request now (stream limit reached, stream busy)."""


class InflightLimitError(OverloadedError):
    """More write requests in flight than the service admits (``--max-inflight``): refused at
    once, before the body is read, with HTTP 503 and ``Retry-After``."""


class UnsafeBindError(EmbdriftError, ValueError):
    """A service asked to listen on a non-loopback address without an access token."""


class StateFormatError(EmbdriftError, ValueError):
    """A service state folder (checkpoint, write-ahead log) that is not readable as embdrift
    state, or that was written with other settings than the service now runs with."""


class StorageError(EmbdriftError, OSError):
    """A write to the service's state (write-ahead log, checkpoint, state folder) that the
    operating system refused: disk full, file size limit, read-only or failing disk, no
    permission. The request that needed it was neither applied nor acknowledged (HTTP 507)."""
