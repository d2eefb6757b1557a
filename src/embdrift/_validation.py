"""Shared input checks used once, at every public entry point."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import numpy.typing as npt

from embdrift.errors import (
    DimensionMismatchError,
    EmbeddingTypeError,
    IdMismatchError,
    InsufficientDataError,
    InvalidEmbeddingsError,
    InvalidParameterError,
)

__all__ = [
    "as_embeddings",
    "as_group_labels",
    "as_values_1d",
    "check_choice",
    "check_int",
    "check_probability",
    "check_rng",
]


def as_embeddings(
    x: npt.ArrayLike,
    *,
    name: str = "embeddings",
    min_rows: int = 1,
    dim: int | None = None,
    copy: bool = False,
) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 (rows, dimensions) array, or raise.

    The result may share memory with ``x`` when no conversion is needed (embdrift never writes
    into it); ``copy=True`` guarantees an independent array for callers that keep it.
    """
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except ValueError as exc:  # numpy refuses ragged nested sequences
            raise InvalidEmbeddingsError(
                f"{name} must be a 2-D array of shape (rows, dimensions) with equal-length rows;"
                f" got ragged rows ({exc}). Pad or drop the short rows."
            ) from None
    if arr.dtype == object:
        raise EmbeddingTypeError(
            f"{name} must hold real numbers; got an object array (ragged rows or mixed types)."
            " Pass a numeric (n, d) array."
        )
    if arr.dtype.kind not in "iuf":
        raise EmbeddingTypeError(
            f"{name} must hold real numbers (integer or float dtype); got dtype {arr.dtype}."
            " Convert the embeddings to float32."
        )
    if arr.ndim != 2:
        raise InvalidEmbeddingsError(
            f"{name} must be a 2-D array of shape (rows, dimensions); got {arr.ndim}-D array of"
            f" shape {arr.shape}. Reshape with x.reshape(-1, d) or stack the rows."
        )
    n, d = arr.shape
    if n == 0 or d == 0:
        raise InvalidEmbeddingsError(
            f"{name} must have at least one row and one dimension; got shape {arr.shape}."
        )
    if n < min_rows:
        raise InsufficientDataError(
            f"{name} needs at least {min_rows} rows; got {n}. Use a larger window."
        )
    if dim is not None and d != dim:
        raise DimensionMismatchError(
            f"{name} must have {dim} dimensions like the reference; got {d}."
            " Embed with the same model as the reference, or build a new reference."
        )
    out = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(out)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise InvalidEmbeddingsError(
            f"{name} must be finite; {bad_rows.size} row(s) hold NaN or inf"
            f" (first at row {int(bad_rows[0])}). Drop or repair those rows."
        )
    return out.copy() if copy and out is arr else out


def as_group_labels(groups: npt.ArrayLike, *, n: int, name: str = "groups") -> np.ndarray:
    """Return ``groups`` as a 1-D array of ``n`` string labels (one per row), or raise."""
    arr = np.asarray(groups)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise IdMismatchError(
            f"{name} must hold one label per row: {n} labels expected, got shape {arr.shape}."
            " Pass the group (source, document, family) of every row, in row order."
        )
    if arr.dtype.kind not in "iuUSb":
        raise InvalidParameterError(
            f"{name} must hold integer or string labels; got dtype {arr.dtype}."
            " Convert the labels with .astype(str)."
        )
    return arr.astype(str)


def as_values_1d(x: npt.ArrayLike, *, name: str, min_size: int = 1) -> np.ndarray:
    """Return ``x`` as a finite float64 1-D array, or raise."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iuf":
        raise EmbeddingTypeError(f"{name} must hold real numbers; got dtype {arr.dtype}.")
    if arr.ndim != 1:
        raise InvalidEmbeddingsError(f"{name} must be 1-D; got shape {arr.shape}.")
    if arr.size < min_size:
        raise InsufficientDataError(f"{name} needs at least {min_size} values; got {arr.size}.")
    out = arr.astype(np.float64)
    if not np.isfinite(out).all():
        raise InvalidEmbeddingsError(f"{name} must be finite; it holds NaN or inf.")
    return out


def check_int(value: Any, *, name: str, low: int, high: int | None = None) -> int:
    """Check that ``value`` is an int in ``[low, high]``."""
    upper = "inf)" if high is None else f"{high}]"
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not is_int or int(value) < low or (high is not None and int(value) > high):
        raise InvalidParameterError(
            f"The {name!r} parameter must be an int in the range [{low}, {upper}."
            f" Got {value!r} instead."
        )
    return int(value)


def check_probability(
    value: Any, *, name: str, open_low: bool = True, open_high: bool = True
) -> float:
    """Check that ``value`` is a real number in (0, 1), with optionally closed ends."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = (v > 0 if open_low else v >= 0) and (v < 1 if open_high else v <= 1)
    if not ok:
        lo = "(0" if open_low else "[0"
        hi = "1)" if open_high else "1]"
        raise InvalidParameterError(
            f"The {name!r} parameter must be a float in the range {lo}, {hi}."
            f" Got {value!r} instead."
        )
    return float(value)


def check_choice(value: Any, *, name: str, choices: tuple[str, ...]) -> str:
    """Check that ``value`` is one of ``choices``."""
    if value not in choices:
        raise InvalidParameterError(
            f"The {name!r} parameter must be one of {{{', '.join(map(repr, choices))}}}."
            f" Got {value!r} instead."
        )
    return str(value)


def check_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """Return a ``numpy.random.Generator`` from a seed, a generator or None (fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise InvalidParameterError(
            f"The 'seed' parameter must be an int, a numpy.random.Generator or None."
            f" Got {seed!r} instead."
        )
    return np.random.default_rng(seed)
