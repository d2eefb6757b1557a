"""Reading embeddings from files: ``.npy``, ``.npz`` and Parquet (an edge; no statistics here).

Nothing is ever unpickled: ``np.load`` always runs with ``allow_pickle=False``.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embdrift._validation import as_embeddings
from embdrift.errors import FileFormatError, InvalidEmbeddingsError

__all__ = ["EmbeddingFile", "SUFFIXES", "read_embeddings"]

SUFFIXES = (".npy", ".npz", ".parquet")
_EMBEDDING_COLUMNS = ("embedding", "embeddings", "vector", "emb")

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class EmbeddingFile:
    """Embeddings (n, d) float32 read from a file, with optional ids and timestamps (n,)."""

    embeddings: np.ndarray
    ids: np.ndarray | None = None
    timestamps: np.ndarray | None = None


def read_embeddings(
    path: str | os.PathLike[str],
    *,
    column: str | None = None,
    on_progress: ProgressCallback | None = None,
) -> EmbeddingFile:
    """Read embeddings from ``path``.

    - ``.npy``: a 2-D numeric array.
    - ``.npz``: the array ``embeddings`` (or the only array), and optional ``ids`` and
      ``timestamps`` arrays.
    - ``.parquet``: a list or fixed-size-list column of numbers (``column``, or the first
      of embedding/embeddings/vector/emb, or the only list column), and optional ``id`` and
      ``timestamp`` columns. ``on_progress(done, total)`` is called per row group.
    """
    source = Path(path)
    suffix = source.suffix.lower()
    if suffix not in SUFFIXES:
        raise FileFormatError(
            f"Cannot read {str(source)!r}: unknown file type {suffix or '(none)'!r}."
            f" Supported: {', '.join(SUFFIXES)}."
        )
    if not source.is_file():
        raise FileFormatError(f"Cannot read {str(source)!r}: no such file.")
    if suffix == ".parquet":
        return _read_parquet(source, column, on_progress)
    return _read_numpy(source)


def _read_numpy(source: Path) -> EmbeddingFile:
    try:
        loaded = np.load(source, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise FileFormatError(
            f"Cannot read {str(source)!r} as {source.suffix}: {exc}. Write it with numpy.save"
            " (or numpy.savez) from a numeric array."
        ) from None
    if isinstance(loaded, np.ndarray):
        return EmbeddingFile(as_embeddings(loaded, name=f"embeddings in {source.name}"))
    with loaded as archive:
        names = archive.files
        key = "embeddings" if "embeddings" in names else (names[0] if len(names) == 1 else None)
        if key is None:
            raise FileFormatError(
                f"{str(source)!r} holds arrays {names}; name the embeddings array 'embeddings'."
            )
        try:
            emb = as_embeddings(archive[key], name=f"embeddings in {source.name}")
            ids = archive["ids"] if "ids" in names else None
            ts = archive["timestamps"] if "timestamps" in names else None
        except ValueError as exc:
            if isinstance(exc, InvalidEmbeddingsError):
                raise
            raise FileFormatError(f"Cannot read {str(source)!r}: {exc}.") from None
    _check_lengths(source, emb, ids, "ids")
    _check_lengths(source, emb, ts, "timestamps")
    return EmbeddingFile(emb, ids, ts)


def _check_lengths(source: Path, emb: np.ndarray, extra: np.ndarray | None, what: str) -> None:
    if extra is not None and (extra.ndim != 1 or extra.shape[0] != emb.shape[0]):
        raise FileFormatError(
            f"{str(source)!r}: {what} has shape {extra.shape} but there are {emb.shape[0]}"
            f" embeddings; give one {what[:-1]} per row."
        )


def _read_parquet(
    source: Path, column: str | None, on_progress: ProgressCallback | None
) -> EmbeddingFile:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as exc:
        raise FileFormatError(f"Cannot read {str(source)!r} as Parquet: {exc}.") from None
    schema = parquet.schema_arrow
    name = _embedding_column(source, schema, column)
    wanted = [name] + [c for c in ("id", "timestamp") if c in schema.names]
    chunks: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    stamps: list[np.ndarray] = []
    total = parquet.num_row_groups
    for g in range(total):
        table = parquet.read_row_group(g, columns=wanted)
        chunks.append(_list_column_to_array(source, table.column(name).combine_chunks(), name))
        if "id" in table.column_names:
            ids.append(table.column("id").to_numpy(zero_copy_only=False))
        if "timestamp" in table.column_names:
            stamps.append(table.column("timestamp").to_numpy(zero_copy_only=False))
        if on_progress is not None:
            on_progress(g + 1, total)
    if not chunks:
        raise InvalidEmbeddingsError(f"{str(source)!r} has no rows.")
    emb = as_embeddings(np.vstack(chunks), name=f"column {name!r} of {source.name}")
    return EmbeddingFile(
        emb,
        np.concatenate(ids) if ids else None,
        np.concatenate(stamps) if stamps else None,
    )


def _embedding_column(source: Path, schema: object, column: str | None) -> str:
    import pyarrow as pa

    assert isinstance(schema, pa.Schema)
    lists = [
        f.name
        for f in schema
        if pa.types.is_list(f.type)
        or pa.types.is_fixed_size_list(f.type)
        or pa.types.is_large_list(f.type)
    ]
    if column is not None:
        if column not in schema.names:
            raise FileFormatError(
                f"{str(source)!r} has no column {column!r}; its columns are {schema.names}."
            )
        if column not in lists:
            raise FileFormatError(
                f"Column {column!r} of {str(source)!r} must be a list of numbers; it is"
                f" {schema.field(column).type}."
            )
        return column
    for candidate in _EMBEDDING_COLUMNS:
        if candidate in lists:
            return candidate
    if len(lists) == 1:
        return lists[0]
    raise FileFormatError(
        f"Cannot tell which column of {str(source)!r} holds the embeddings (list columns:"
        f" {lists or 'none'}). Name it 'embedding' or pass --column."
    )


def _list_column_to_array(source: Path, col: object, name: str) -> np.ndarray:
    import pyarrow as pa

    assert isinstance(col, pa.Array)
    if col.null_count:
        raise InvalidEmbeddingsError(
            f"Column {name!r} of {str(source)!r} has {col.null_count} null rows; drop them."
        )
    if pa.types.is_fixed_size_list(col.type):
        width = col.type.list_size
        values = col.flatten().to_numpy(zero_copy_only=False)
        return values.reshape(-1, width)
    lengths = col.value_lengths().to_numpy(zero_copy_only=False)
    if lengths.size and (lengths != lengths[0]).any():
        bad = int(np.flatnonzero(lengths != lengths[0])[0])
        raise InvalidEmbeddingsError(
            f"Column {name!r} of {str(source)!r} has ragged rows: row 0 has {lengths[0]} values,"
            f" row {bad} has {lengths[bad]}. Every embedding needs the same dimension."
        )
    values = col.flatten().to_numpy(zero_copy_only=False)
    if values.dtype.kind not in "iuf":
        raise FileFormatError(
            f"Column {name!r} of {str(source)!r} must hold numbers; it holds {values.dtype}."
        )
    return values.reshape(len(col), -1)
