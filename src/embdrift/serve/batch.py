"""Request bodies -> validated batches, and batches <-> write-ahead-log records.

A :class:`Batch` is what one ``POST /v1/streams/{stream}/embeddings`` carries once it has
been read and checked: float32 rows, optional ids, timestamps and per-row outcomes. An
:class:`OutcomeEvents` is one ``POST .../outcomes``. Both serialise to the bytes a log record
holds (:meth:`Batch.to_record` / :func:`record_from_bytes`), so that a replay feeds the monitor
exactly the arrays the live request fed it.

``.npy`` bodies are parsed here from their header (``numpy.lib.format``) with
``allow_pickle=False``: the dtype must be float32 or float64 and the shape 2-D and at most
the configured number of rows *before* any array is allocated, and the header must agree with
the body's length.

JSON bodies are read strictly: duplicate keys, nesting deeper than the Python parser's
recursion limit, numbers beyond float32 (embeddings) or float64 (outcomes) and timestamps
outside datetime64[ns] (years 1678-2261) are refused with :class:`InvalidBodyError` /
:class:`InvalidEmbeddingsError` (HTTP 4xx), never an unhandled exception.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embdrift._validation import as_embeddings
from embdrift.errors import (
    BadStreamNameError,
    InvalidBodyError,
    InvalidEmbeddingsError,
    PayloadTooLargeError,
)

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_OUTCOMES",
    "NAME_PATTERN",
    "Batch",
    "OutcomeEvents",
    "check_name",
    "check_outcomes",
    "parse_embeddings_json",
    "parse_npy",
    "parse_outcomes_json",
    "record_from_bytes",
]

#: Stream and outcome names: Prometheus label values and folder names, so no path tricks.
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
#: Outcome names one batch (and one stream) may carry.
MAX_OUTCOMES = 16
MAX_ID_LENGTH = 256

_KIND_EMBEDDINGS = 1
_KIND_OUTCOMES = 2
_RECORD_HEAD = struct.Struct("<BI")  # kind, length of the JSON header


def check_name(value: Any, *, what: str = "stream") -> str:
    """Return ``value`` if it is a valid stream / outcome name, else raise
    :class:`BadStreamNameError` saying what a valid name looks like."""
    # fullmatch: "$" in a pattern would also match before a trailing newline
    if not isinstance(value, str) or NAME_PATTERN.fullmatch(value) is None:
        raise BadStreamNameError(
            f"The {what} name must match ^[a-z0-9][a-z0-9_-]{{0,63}}$ (lower-case letters,"
            f" digits, '_' and '-', at most 64 characters, starting with a letter or digit);"
            f" got {value!r}. Rename it, e.g. {_suggest(value)!r}."
        )
    return value


def _suggest(value: Any) -> str:
    text = re.sub(r"[^a-z0-9_-]+", "-", str(value).lower()).strip("-_")[:64]
    return text or "main"


@dataclass(frozen=True, slots=True)
class OutcomeEvents:
    """Outcome values (one array per outcome name) posted on their own.

    Attributes
    ----------
    outcomes : Mapping[str, numpy.ndarray]
        Float64 values per outcome name (NaN = missing, ignored by the rates).
    timestamps : numpy.ndarray or None
        Event times (int64 ns), one per value, validated and kept in the log; the service
        attributes events to the window open when they arrive.
    """

    outcomes: Mapping[str, np.ndarray]
    timestamps: np.ndarray | None = None

    @property
    def n_events(self) -> int:
        return int(sum(np.isfinite(v).sum() for v in self.outcomes.values()))

    def to_record(self) -> bytes:
        head = {
            "outcomes": {k: _floats_to_json(v) for k, v in self.outcomes.items()},
            "timestamps": None if self.timestamps is None else self.timestamps.tolist(),
        }
        text = json.dumps(head, separators=(",", ":")).encode()
        return _RECORD_HEAD.pack(_KIND_OUTCOMES, len(text)) + text


@dataclass(frozen=True, slots=True)
class Batch:
    """One validated ingest batch.

    Attributes
    ----------
    embeddings : numpy.ndarray
        Finite float32 rows (m, d).
    ids : numpy.ndarray or None
        One str id per row.
    timestamps : numpy.ndarray or None
        One int64 nanosecond timestamp per row (non-decreasing within the batch).
    outcomes : Mapping[str, numpy.ndarray]
        Per-row float64 outcome values (NaN = no outcome for that row).
    """

    embeddings: np.ndarray
    ids: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    outcomes: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return int(self.embeddings.shape[0])

    def with_timestamps(self, timestamps: np.ndarray) -> Batch:
        return Batch(self.embeddings, self.ids, timestamps, self.outcomes)

    def rows(self, lo: int, hi: int) -> Batch:
        """The rows [lo, hi) as a batch of their own (views, no copies)."""
        return Batch(
            self.embeddings[lo:hi],
            None if self.ids is None else self.ids[lo:hi],
            None if self.timestamps is None else self.timestamps[lo:hi],
            {k: v[lo:hi] for k, v in self.outcomes.items()},
        )

    def checked(self, *, dim: int) -> Batch:
        """This batch validated for a stream of dimension ``dim``: float32 finite rows, one
        str id / int64 timestamp / float outcome per row, valid outcome names. The service
        checks every batch before logging it, so a log never holds a batch the monitor
        would refuse on replay."""
        x = as_embeddings(self.embeddings, name="embeddings", dim=dim)
        m = x.shape[0]
        ids = None
        if self.ids is not None:
            ids = np.asarray(self.ids)
            if ids.shape != (m,) or ids.dtype.kind not in "iuUS":
                raise InvalidBodyError(
                    f"'ids' must hold one string or integer id per row ({m}); got shape"
                    f" {ids.shape} of dtype {ids.dtype}."
                )
            ids = ids.astype(str)
        ts = None
        if self.timestamps is not None:
            ts = np.asarray(self.timestamps)
            if ts.dtype.kind == "M":
                ts = ts.astype("datetime64[ns]").astype(np.int64)
            if ts.shape != (m,) or ts.dtype.kind not in "iu":
                raise InvalidBodyError(
                    f"'timestamps' must hold one int64 nanosecond timestamp per row ({m});"
                    f" got shape {ts.shape} of dtype {ts.dtype}."
                )
            ts = ts.astype(np.int64)
        return Batch(x, ids, ts, check_outcomes(self.outcomes, m))

    def to_record(self) -> bytes:
        """Bytes of a log record: kind, JSON header (shape, ids, timestamps, outcomes), then
        the raw little-endian float32 rows."""
        head = {
            "shape": list(self.embeddings.shape),
            "ids": None if self.ids is None else self.ids.tolist(),
            "timestamps": None if self.timestamps is None else self.timestamps.tolist(),
            "outcomes": {k: _floats_to_json(v) for k, v in self.outcomes.items()},
        }
        text = json.dumps(head, separators=(",", ":")).encode()
        rows = np.ascontiguousarray(self.embeddings, dtype="<f4").tobytes()
        return _RECORD_HEAD.pack(_KIND_EMBEDDINGS, len(text)) + text + rows


def check_outcomes(outcomes: Mapping[str, Any], m: int) -> dict[str, np.ndarray]:
    """Outcome arrays as float64 (m,) each, names valid, at most ``MAX_OUTCOMES``."""
    if len(outcomes) > MAX_OUTCOMES:
        raise InvalidBodyError(f"At most {MAX_OUTCOMES} outcomes per batch; got {len(outcomes)}.")
    out = {}
    for name, values in outcomes.items():
        check_name(name, what="outcome")
        arr = np.asarray(values, dtype=np.float64) if np.ndim(values) == 1 else None
        if arr is None or arr.shape != (m,) or np.isinf(arr).any():
            raise InvalidBodyError(
                f"outcome {name!r} must hold {m} finite numbers (NaN = no outcome)."
            )
        out[name] = arr
    return out


def record_from_bytes(data: bytes) -> Batch | OutcomeEvents:
    """Inverse of ``to_record`` (log replay). The log's CRC has already vouched for the bytes;
    a record that still does not decode raises :class:`InvalidBodyError`."""
    try:
        kind, size = _RECORD_HEAD.unpack_from(data)
        start = _RECORD_HEAD.size
        head = json.loads(data[start : start + size].decode())
        outcomes = {k: _floats_from_json(v) for k, v in head["outcomes"].items()}
        ts = None if head["timestamps"] is None else np.asarray(head["timestamps"], np.int64)
        if kind == _KIND_OUTCOMES:
            return OutcomeEvents(outcomes, ts)
        if kind != _KIND_EMBEDDINGS:
            raise ValueError(f"unknown record kind {kind}")
        m, d = (int(v) for v in head["shape"])
        rows = np.frombuffer(data, dtype="<f4", count=m * d, offset=start + size)
        ids = None if head["ids"] is None else np.asarray(head["ids"], dtype=str)
        return Batch(rows.reshape(m, d).astype(np.float32), ids, ts, outcomes)
    except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as exc:
        raise InvalidBodyError(f"A write-ahead-log record does not decode: {exc}.") from None


def _floats_to_json(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values.tolist()]


def _floats_from_json(values: list[float | None]) -> np.ndarray:
    try:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    except OverflowError:  # an integer beyond float64 (json reads integers exactly)
        return np.full(len(values), np.inf)


#: Largest finite float32: rows are kept as float32, so larger values would become inf.
_F32_MAX = float(np.finfo(np.float32).max)
#: Unix seconds representable as int64 nanoseconds (datetime64[ns]: years 1678-2261).
_MAX_SECONDS = float(np.iinfo(np.int64).max) / 1e9 - 1.0
_MIN_STAMP = np.datetime64("1678-01-01")
_MAX_STAMP = np.datetime64("2261-12-31")


def _rows_float32(x: np.ndarray) -> np.ndarray:
    """``x`` checked to fit float32 before the cast (numpy would turn a value beyond float32
    into inf with a RuntimeWarning), then :func:`as_embeddings`; NaN/inf are refused there."""
    wide = x.dtype.kind in "iu" or (x.dtype.kind == "f" and x.dtype.itemsize > 4)
    if wide and x.ndim == 2 and x.size:
        with np.errstate(invalid="ignore", over="ignore"):
            magnitude = np.abs(x.astype(np.float64))
        big = np.isfinite(magnitude) & (magnitude > _F32_MAX)
        if big.any():
            row = int(np.flatnonzero(big.any(axis=1))[0])
            raise InvalidEmbeddingsError(
                f"embeddings hold values beyond the float32 range (+-{_F32_MAX:.3e}), first"
                f" at row {row}; embeddings are stored as float32. Rescale or drop those rows."
            )
    return as_embeddings(x, name="embeddings")


# ---------------------------------------------------------------------- request bodies
def parse_embeddings_json(body: bytes, *, max_rows: int) -> Batch:
    """A JSON ingest body -> :class:`Batch` (dimension checks are the stream's job).

    Body: ``{"embeddings": [[...], ...], "ids": [...]?, "timestamps": [...]?,
    "outcomes": {"name": [...]}?}``; timestamps are unix seconds (numbers) or ISO 8601
    strings; outcome values are numbers or null (no outcome for that row).
    """
    data = _json_object(body)
    unknown = set(data) - {"embeddings", "ids", "timestamps", "outcomes"}
    if unknown:
        raise InvalidBodyError(
            f"Unknown field(s) {sorted(unknown)} in the ingest body; the fields are"
            " 'embeddings' (required), 'ids', 'timestamps' and 'outcomes'."
        )
    if "embeddings" not in data:
        raise InvalidBodyError(
            "The ingest body has no 'embeddings' field; send"
            ' {"embeddings": [[0.1, 0.2, ...], ...]} (one list of floats per row).'
        )
    raw = data["embeddings"]
    if not isinstance(raw, list) or not raw:
        raise InvalidEmbeddingsError(
            "'embeddings' must be a non-empty list of rows (lists of numbers);"
            f" got {type(raw).__name__}{'' if raw else ' (empty)'}."
        )
    if len(raw) > max_rows:
        raise PayloadTooLargeError(
            f"The batch has {len(raw)} rows; this service accepts at most {max_rows} per"
            " request (--max-rows). Split it into smaller batches."
        )
    if not all(isinstance(r, list) for r in raw) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for r in raw for v in r
    ):
        raise InvalidEmbeddingsError(
            "'embeddings' must be a list of rows, each a list of numbers (no strings, null or"
            " booleans); fix the rows that are not."
        )
    try:
        arr = np.asarray(raw)
    except ValueError:  # ragged rows: as_embeddings words the message
        arr = None
    x = as_embeddings(raw, name="embeddings") if arr is None else _rows_float32(arr)
    m = x.shape[0]
    return Batch(
        x,
        _ids(data.get("ids"), m),
        _timestamps(data.get("timestamps"), m),
        _outcomes(data.get("outcomes"), m, per_row=True),
    )


def parse_outcomes_json(body: bytes) -> OutcomeEvents:
    """A JSON outcomes body ``{"outcomes": {"name": [values]}, "timestamps": [...]?}``."""
    data = _json_object(body)
    unknown = set(data) - {"outcomes", "timestamps"}
    if unknown:
        raise InvalidBodyError(
            f"Unknown field(s) {sorted(unknown)} in the outcomes body; the fields are"
            " 'outcomes' (required) and 'timestamps'."
        )
    if not isinstance(data.get("outcomes"), dict) or not data["outcomes"]:
        raise InvalidBodyError(
            "The outcomes body needs a non-empty 'outcomes' object, e.g. {\"outcomes\":"
            ' {"clicked": [1, 0, 1]}}.'
        )
    lengths = {len(v) for v in data["outcomes"].values() if isinstance(v, list)}
    n = lengths.pop() if len(lengths) == 1 else -1
    if n <= 0:
        raise InvalidBodyError(
            "Every outcome in 'outcomes' must be a non-empty list of numbers, all of the same"
            f" length; got lengths {sorted(lengths) or 'none'}."
        )
    return OutcomeEvents(
        _outcomes(data["outcomes"], n, per_row=False), _timestamps(data.get("timestamps"), n)
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` refusing duplicate keys: two parsers (a proxy, this service)
    must not read two different bodies from one request."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidBodyError(f"The JSON body repeats the key {key!r}; send each key once.")
        out[key] = value
    return out


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body, object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, InvalidBodyError):
            raise
        raise InvalidBodyError(
            f"The body is not valid JSON ({exc}). Send a JSON object with"
            " Content-Type: application/json, or an .npy array as application/x-npy."
        ) from None
    except RecursionError:
        raise InvalidBodyError(
            "The JSON body is nested too deeply to read; an ingest body is an object of flat"
            " lists (rows of numbers), nested at most three levels."
        ) from None
    if not isinstance(data, dict):
        raise InvalidBodyError(f"The body must be a JSON object; got {type(data).__name__}.")
    return data


def _ids(raw: Any, m: int) -> np.ndarray | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != m:
        got = f"{len(raw)} values" if isinstance(raw, list) else type(raw).__name__
        raise InvalidBodyError(f"'ids' must be a list of one id per row ({m}); got {got}.")
    if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in raw):
        raise InvalidBodyError("'ids' must hold strings or integers.")
    ids = [str(v) for v in raw]
    if any(len(v) > MAX_ID_LENGTH for v in ids):
        raise InvalidBodyError(f"Each id must be at most {MAX_ID_LENGTH} characters long.")
    for i, v in enumerate(ids):
        if _CONTROL.search(v) is not None or not _encodes(v):
            raise InvalidBodyError(
                f"id {i} ({v!r:.40}) holds a control character or an unpaired surrogate; ids"
                " must be printable UTF-8 text."
            )
    return np.asarray(ids, dtype=str)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _timestamps(raw: Any, m: int) -> np.ndarray | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != m:
        got = f"{len(raw)} values" if isinstance(raw, list) else type(raw).__name__
        raise InvalidBodyError(
            f"'timestamps' must be a list of one timestamp per row ({m}); got {got}."
        )
    try:
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw):
            secs = np.asarray(raw, dtype=np.float64)
            if not np.isfinite(secs).all():
                raise ValueError("NaN or inf")
            if np.abs(secs).max() > _MAX_SECONDS:
                raise ValueError("beyond the years 1678-2261 of int64 nanoseconds")
            return np.round(secs * 1e9).astype(np.int64)
        if all(isinstance(v, str) for v in raw):
            # parsed in the unit the text carries, range-checked, then made nanoseconds
            # (a direct datetime64[ns] parse wraps years beyond 2262 around silently)
            stamps = np.asarray([v.rstrip("Z") for v in raw], dtype="datetime64")
            if np.isnat(stamps).any():
                raise ValueError("NaT")
            if stamps.min() < _MIN_STAMP or stamps.max() > _MAX_STAMP:
                raise ValueError("beyond the years 1678-2261 of int64 nanoseconds")
            return stamps.astype("datetime64[ns]").astype(np.int64)
    except (ValueError, OverflowError, TypeError) as exc:
        raise InvalidBodyError(
            f"'timestamps' could not be read ({exc}); use unix seconds (numbers) or ISO 8601"
            " strings such as 2026-01-31T12:00:00Z."
        ) from None
    raise InvalidBodyError(
        "'timestamps' must be all numbers (unix seconds) or all ISO 8601 strings."
    )


def _outcomes(raw: Any, m: int, *, per_row: bool) -> dict[str, np.ndarray]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidBodyError(f"'outcomes' must be an object name -> list; got {raw!r:.60}.")
    if len(raw) > MAX_OUTCOMES:
        raise InvalidBodyError(
            f"'outcomes' has {len(raw)} names; at most {MAX_OUTCOMES} are accepted."
        )
    out: dict[str, np.ndarray] = {}
    for name, values in raw.items():
        check_name(name, what="outcome")
        if not isinstance(values, list) or len(values) != m:
            got = f"{len(values)} values" if isinstance(values, list) else type(values).__name__
            what = f"one value per row ({m})" if per_row else f"{m} values"
            raise InvalidBodyError(f"outcome {name!r} must be a list of {what}; got {got}.")
        ok = all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values
        )
        arr = _floats_from_json(values) if ok else None
        if arr is None or np.isinf(arr).any():
            raise InvalidBodyError(
                f"outcome {name!r} must hold finite numbers or null (no outcome for that row)."
            )
        out[name] = arr
    return out


def parse_npy(body: bytes, *, max_rows: int) -> Batch:
    """An ``.npy`` body (float32/float64, 2-D, C or Fortran order) -> :class:`Batch`.

    The header is read with ``numpy.lib.format`` and checked (dtype, rank, rows, byte count)
    before the array is built from the body; pickled object arrays are refused, never loaded.
    """
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, EOFError) as exc:
        raise InvalidBodyError(
            f"The body is not a readable .npy array ({exc}). Write it with"
            " numpy.save(buffer, x.astype(np.float32)) and send it as application/x-npy."
        ) from None
    if dtype.hasobject or dtype.kind != "f" or dtype.itemsize not in (4, 8):
        raise InvalidEmbeddingsError(
            f"The .npy array must have dtype float32 or float64; got {dtype}. Convert it with"
            " x.astype(np.float32) (object and pickled arrays are never loaded)."
        )
    if len(shape) != 2:
        raise InvalidEmbeddingsError(
            f"The .npy array must be 2-D (rows, dimensions); got shape {shape}."
        )
    if not all(type(v) is int and v >= 0 for v in shape):
        raise InvalidBodyError(
            f"The .npy header announces shape {shape}; dimensions must be non-negative integers."
        )
    m, d = shape
    if m > max_rows:
        raise PayloadTooLargeError(
            f"The .npy array has {m} rows; this service accepts at most {max_rows} per request"
            " (--max-rows). Split it into smaller batches."
        )
    offset = stream.tell()
    expected = m * d * dtype.itemsize
    if len(body) - offset != expected:
        raise InvalidBodyError(
            f"The .npy header announces shape {shape} of {dtype} ({expected} bytes) but the"
            f" body holds {len(body) - offset} bytes after the header; the upload is truncated"
            " or padded."
        )
    flat = np.frombuffer(body, dtype=dtype, count=m * d, offset=offset)
    x = flat.reshape((m, d), order="F" if fortran else "C")
    return Batch(_rows_float32(x))
