"""Drift over many files on Dask: sketch each partition where it lies, merge the sketches in a tree.

A dataset is a list of partitions: files (``.parquet``, ``.npy``, ``.npz``), Parquet row groups
(``split_row_groups=True``), or the row blocks of a ``dask.array.Array``. One Dask task per
partition reads it on a worker, validates it (dimension, NaN/inf: the error names the file and
the row) and feeds it to a :class:`~embdrift.stream.SketchSet` built on the reference's
:class:`~embdrift.stream.StreamBasis`. Tasks return the sketches' ``to_bytes()``; merge tasks
fold ``fan_in`` of them at a time until one is left. Only sketches travel between machines,
never embeddings: a partition's result is a few hundred KB of sums and quantile sketches plus
its reservoir sample (``reservoir_size`` rows, 0 for none), whatever the partition's size.

The merged :class:`SketchSet` is what one process feeding every row to one set would hold:
feature sums and moments equal up to float rounding (sums are associative up to rounding; the
moment merge is Chan, Golub & LeVeque's pairwise update), KLL quantiles within their rank error
ε(k) (Karnin, Lang & Liberty 2016: KLL merges keep the bound), and the reservoir an exact A-Res
sample of the union (Efraimidis & Spirakis 2006; merging keeps the largest keys). Each
partition's reservoir keys are seeded by ``SeedSequence([seed, partition index])``: independent
across partitions, and the same on a re-run, so a partition recomputed after a worker died
gives the same rows. Decisions come from :meth:`StreamMonitor.test` on the merged sketches,
with the null calibrated through the sketches (:class:`~embdrift.stream.SketchNull`).

Dask serialises what tasks exchange; embdrift objects cross as their own bytes (the reference
as its saved ``.npz``, sketches as ``to_bytes()``), so no embdrift object is pickled.

Notes
-----
Distributed :func:`fit_reference`. A :class:`~embdrift.Reference` holds more than a PCA: the
held-out test rows every comparison and calibration uses, the anchors of the novelty score, the
median-heuristic bandwidth and the PC1 bin edges, all of which need rows, not moments. PCA from
merged d × d moment sketches would give the components but none of the rest. So the engine
draws a uniform sample of ``sample_size`` rows without replacement over all partitions (per-
partition A-Res reservoirs merged in the same tree; exact, not approximate) and calls
:meth:`Reference.fit` on it. The result is a Reference of the same kind as a single-process
one, fitted on a uniform random subset, which is what ``Reference.fit`` itself does beyond
``max_rows``. The PCA's error from fitting on N rows instead of all is O(1/√N) in the
covariance (e.g. 20,000 rows: ~0.7 % of its scale), far below the drift the monitor is for.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embdrift._validation import check_int
from embdrift.errors import (
    DimensionMismatchError,
    EmbdriftError,
    FileFormatError,
    InvalidEmbeddingsError,
    InvalidParameterError,
    MissingExtraError,
)
from embdrift.io import SUFFIXES, read_embeddings
from embdrift.reference import Reference
from embdrift.results import DriftResult
from embdrift.stream.basis import StreamBasis
from embdrift.stream.monitor import StreamMonitor, WindowResult
from embdrift.stream.sketches import WeightedReservoir
from embdrift.stream.sketchset import SketchSet

if TYPE_CHECKING:  # pragma: no cover - typing only
    from distributed import Client, Future

__all__ = [
    "Partition",
    "SketchWindow",
    "check_dataset",
    "check_windows",
    "connect",
    "fit_reference",
    "list_partitions",
    "sketch_dataset",
    "sketch_windows",
]

INSTALL_HINT = "pip install 'embdrift[dask]'"
_NS = 1_000_000_000
#: Rows fed to a SketchSet at a time inside a partition: bounds the (rows, 2D + p) float32
#: feature matrix of one update to ~70 MB at the default 512 frequencies.
_CHUNK_ROWS = 16_384

ProgressCallback = Callable[[int, int], None]


def _require_distributed() -> Any:
    """Import ``distributed`` or raise :class:`MissingExtraError` with the install command."""
    try:
        import dask  # noqa: F401
        import distributed
    except ImportError as exc:
        raise MissingExtraError(
            f"The Dask engine needs dask[distributed] ({exc.name} is not installed). Install"
            f" it with: {INSTALL_HINT}"
        ) from None
    return distributed


# ====================================================================== partitions
@dataclass(frozen=True, slots=True)
class Partition:
    """One unit of work: a whole file, or one row group of a Parquet file.

    Attributes
    ----------
    path : str
        The file, as the workers will open it.
    row_group : int or None
        Parquet row group, or None for the whole file.
    first_row : int
        Row number (within the file) of the partition's first row: errors and default ids
        count rows from the start of the file.
    """

    path: str
    row_group: int | None = None
    first_row: int = 0

    @property
    def name(self) -> str:
        if self.row_group is None:
            return self.path
        return f"{self.path} (row group {self.row_group})"


def list_partitions(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    split_row_groups: bool = False,
) -> list[Partition]:
    """The partitions of ``source``: files matching a glob pattern, or a list of files.

    Files are sorted by path, so partition numbers (which seed each partition's reservoir) do
    not depend on the order the file system lists them, and made absolute (workers do not
    share the client's working directory). ``split_row_groups=True`` makes one partition per
    Parquet row group (read from the footers, on the client).
    """
    if isinstance(source, str | os.PathLike):
        pattern = os.fspath(source)
        paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not paths:
            raise FileFormatError(
                f"No file matches {pattern!r}. Check the pattern (quote it so the shell does"
                " not expand it) and that the files are readable here."
            )
    else:
        paths = sorted(os.fspath(p) for p in source)
        if not paths:
            raise FileFormatError("The list of files is empty; pass at least one file.")
    out: list[Partition] = []
    # Absolute paths: workers do not share the client's working directory.
    for path in (os.path.abspath(p) for p in paths):
        suffix = Path(path).suffix.lower()
        if suffix not in SUFFIXES:
            raise FileFormatError(
                f"Cannot read {path!r}: unknown file type {suffix or '(none)'!r}."
                f" Supported: {', '.join(SUFFIXES)}."
            )
        if not Path(path).is_file():
            raise FileFormatError(f"Cannot read {path!r}: no such file.")
        if split_row_groups and suffix == ".parquet":
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path).metadata
            first = 0
            for g in range(meta.num_row_groups):
                out.append(Partition(path, g, first))
                first += meta.row_group(g).num_rows
        else:
            out.append(Partition(path))
    return out


@dataclass(frozen=True, slots=True)
class _Rows:
    """A validated partition: float32 rows, string ids, optional timestamps (int64 ns)."""

    x: np.ndarray
    ids: np.ndarray
    timestamps: np.ndarray | None


def _read_partition(
    part: Partition,
    *,
    dim: int,
    column: str | None,
    timestamp_column: str | None,
    expected: str = "the reference has",
) -> _Rows:
    """Read and validate one partition on a worker (``embdrift.io`` does the parsing)."""
    with _naming(part):
        if part.row_group is None:
            data = read_embeddings(part.path, column=column)
            raw, ids, stamps = data.embeddings, data.ids, data.timestamps
            if timestamp_column not in (None, "timestamp") and Path(part.path).suffix == ".parquet":
                stamps = _parquet_column(part.path, timestamp_column, None)
        else:
            raw, ids, stamps = _read_row_group(part, column, timestamp_column or "timestamp")
    x = _validated(raw, part, dim, expected=expected)
    n = x.shape[0]
    if ids is None:
        ids = np.char.add(
            f"{part.path}:", np.arange(part.first_row, part.first_row + n).astype(str)
        )
    else:
        ids = np.asarray(ids).astype(str)
    ts = None
    if timestamp_column is not None:
        if stamps is None:
            raise InvalidParameterError(
                f"{part.name} has no timestamp column {timestamp_column!r} (Parquet) or"
                " 'timestamps' array (npz); windows need one timestamp per row. Pass"
                " timestamp_column= (--timestamp-column) naming it."
            )
        ts = _as_nanoseconds(np.asarray(stamps), part)
    return _Rows(x, ids, ts)


def _read_row_group(
    part: Partition, column: str | None, timestamp_column: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from embdrift.io import _embedding_column, _list_column_to_array

    source = Path(part.path)
    try:
        parquet = pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as exc:
        raise FileFormatError(f"Cannot read {part.path!r} as Parquet: {exc}.") from None
    schema = parquet.schema_arrow
    name = _embedding_column(source, schema, column)
    wanted = [name] + [c for c in dict.fromkeys(("id", timestamp_column)) if c in schema.names]
    assert part.row_group is not None
    table = parquet.read_row_group(part.row_group, columns=wanted)
    raw = _list_column_to_array(source, table.column(name).combine_chunks(), name)
    ids = table.column("id").to_numpy(zero_copy_only=False) if "id" in wanted else None
    stamps = None
    if timestamp_column in table.column_names:
        stamps = table.column(timestamp_column).to_numpy(zero_copy_only=False)
    return raw, ids, stamps


def _parquet_column(path: str, name: str, row_group: int | None) -> np.ndarray | None:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    if name not in parquet.schema_arrow.names:
        return None
    if row_group is None:
        table = parquet.read(columns=[name])
    else:
        table = parquet.read_row_group(row_group, columns=[name])
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False))


def _validated(
    raw: np.ndarray, part: Partition, dim: int, *, expected: str = "the reference has"
) -> np.ndarray:
    """float32 rows of the reference's dimension, all finite; errors name the file and row."""
    if raw.ndim != 2 or raw.shape[0] == 0:
        raise InvalidEmbeddingsError(
            f"{part.name}: expected a non-empty (rows, {dim}) array of embeddings; got shape"
            f" {raw.shape}."
        )
    if raw.shape[1] != dim:
        raise DimensionMismatchError(
            f"{part.name}: embeddings have {raw.shape[1]} dimensions; {expected} {dim}."
            " Every partition must come from the same embedding model; re-embed this file or"
            " leave it out."
        )
    x = np.ascontiguousarray(raw, dtype=np.float32)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InvalidEmbeddingsError(
            f"{part.name}: row {part.first_row + int(bad[0])} holds NaN or inf"
            f" ({bad.size} bad row(s) in this partition; rows count from 0 at the start of the"
            " file). Drop or repair those rows and run again."
        )
    return x


def _as_nanoseconds(raw: np.ndarray, part: Partition) -> np.ndarray:
    """Timestamps as int64 nanoseconds since the epoch (datetime64, or numeric seconds)."""
    if raw.dtype.kind == "M":
        if np.isnat(raw).any():
            row = part.first_row + int(np.flatnonzero(np.isnat(raw))[0])
            raise InvalidParameterError(f"{part.name}: row {row} has no timestamp (NaT).")
        return raw.astype("datetime64[ns]").astype(np.int64)
    if raw.dtype.kind in "iuf":
        secs = raw.astype(np.float64)
        if not np.isfinite(secs).all():
            row = part.first_row + int(np.flatnonzero(~np.isfinite(secs))[0])
            raise InvalidParameterError(f"{part.name}: row {row} has a NaN or inf timestamp.")
        return np.round(secs * _NS).astype(np.int64)
    raise InvalidParameterError(
        f"{part.name}: timestamps must be datetime64 or numeric seconds since the epoch; got"
        f" dtype {raw.dtype}."
    )


# ====================================================================== worker side
#: Per-process cache of bases (one per reference and sketch settings): a worker rebuilds the
#: basis from the reference's bytes once, not once per task.
_BASES: dict[tuple[str, int, int, int], StreamBasis] = {}


def _basis(ref_blob: bytes, spec: dict[str, Any]) -> StreamBasis:
    key = (spec["reference_id"], spec["n_frequencies"], spec["n_projections"], spec["seed"])
    basis = _BASES.get(key)
    if basis is None:
        with tempfile.TemporaryDirectory(prefix="embdrift-ref-") as tmp:
            path = Path(tmp) / "reference.npz"
            path.write_bytes(ref_blob)
            reference = Reference.load(path)
        basis = StreamBasis(
            reference,
            n_frequencies=spec["n_frequencies"],
            n_projections=spec["n_projections"],
            seed=spec["seed"],
        )
        _BASES.clear()  # one reference at a time per worker keeps memory bounded
        _BASES[key] = basis
    return basis


def _partition_seed(seed: int, index: int, key: int = 0) -> int:
    """Independent reservoir seeds per (partition, window), the same on every re-run."""
    entropy = [seed, index, key & (2**63 - 1)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _sketch_rows(
    basis: StreamBasis, spec: dict[str, Any], rows: _Rows, index: int
) -> dict[int, bytes]:
    """The partition's SketchSet per window key (key 0 without windows), as bytes."""
    window = spec["window_ns"]
    if window is None:
        groups: list[tuple[int, np.ndarray | None]] = [(0, None)]
    else:
        assert rows.timestamps is not None
        keys = np.floor_divide(rows.timestamps, window)
        uniq, inverse = np.unique(keys, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(uniq.size + 1))
        groups = [(int(k), order[bounds[j] : bounds[j + 1]]) for j, k in enumerate(uniq)]
    out: dict[int, bytes] = {}
    for key, take in groups:
        x = rows.x if take is None else rows.x[take]
        ids = rows.ids if take is None else rows.ids[take]
        sketches = SketchSet(
            basis,
            quantile_k=spec["quantile_k"],
            reservoir_size=spec["reservoir_size"],
            seed=_partition_seed(spec["seed"], index, key),
        )
        for lo in range(0, x.shape[0], _CHUNK_ROWS):
            hi = lo + _CHUNK_ROWS
            sketches.update(x[lo:hi], ids=ids[lo:hi])
        out[key] = sketches.to_bytes()
    return out


def _sketch_file(
    ref_blob: bytes, spec: dict[str, Any], part: tuple[str, int | None, int], index: int
) -> dict[int, bytes]:
    basis = _basis(ref_blob, spec)
    partition = Partition(*part)
    rows = _read_partition(
        partition, dim=basis.dim, column=spec["column"], timestamp_column=spec["timestamp_column"]
    )
    with _naming(partition):  # e.g. duplicate ids in the file's id column
        return _sketch_rows(basis, spec, rows, index)


@contextmanager
def _naming(part: Partition) -> Iterator[None]:
    """Re-raise an embdrift error with the partition's name in front, unless it has it."""
    try:
        yield
    except EmbdriftError as exc:
        if part.path in str(exc):
            raise
        raise type(exc)(f"In {part.name}: {exc}") from None


def _sketch_block(
    ref_blob: bytes, spec: dict[str, Any], block: np.ndarray, index: int, first_row: int
) -> dict[int, bytes]:
    basis = _basis(ref_blob, spec)
    part = Partition(f"row block {index} of the dask array", None, first_row)
    x = _validated(np.asarray(block), part, basis.dim)
    ids = np.arange(first_row, first_row + x.shape[0]).astype(str)
    return _sketch_rows(basis, spec, _Rows(x, ids, None), index)


def _merge(ref_blob: bytes, spec: dict[str, Any], *parts: dict[int, bytes]) -> dict[int, bytes]:
    """Fold sketch sets per key (window), in the order given (deterministic)."""
    basis = _basis(ref_blob, spec)
    merged: dict[int, SketchSet] = {}
    for part in parts:
        for key, blob in part.items():
            incoming = SketchSet.from_bytes(blob, basis=basis)
            if key in merged:
                merged[key].merge(incoming)
            else:
                merged[key] = incoming
    return {key: merged[key].to_bytes() for key in sorted(merged)}


def _reservoir_file(spec: dict[str, Any], part: tuple[str, int | None, int], index: int) -> bytes:
    partition = Partition(*part)
    rows = _read_partition(
        partition,
        dim=spec["dim"],
        column=spec["column"],
        timestamp_column=None,
        expected="the first file has",
    )
    res = WeightedReservoir(spec["sample_size"], seed=_partition_seed(spec["seed"], index))
    with _naming(partition):
        res.update(rows.x, ids=rows.ids)
    return res.to_bytes()


def _merge_reservoirs(*blobs: bytes) -> bytes:
    merged = WeightedReservoir.from_bytes(blobs[0])
    for blob in blobs[1:]:
        merged.merge(WeightedReservoir.from_bytes(blob))
    return merged.to_bytes()


# ====================================================================== client side
@contextmanager
def connect(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
) -> Iterator[Client]:
    """A Dask client: to the scheduler at ``scheduler``, or to a new local cluster.

    Without an address, a ``LocalCluster`` of ``n_workers`` worker processes (default: one per
    core) with ``threads_per_worker`` threads each starts on 127.0.0.1 (no dashboard) and is
    shut down on exit. Sketching is numpy-heavy and holds the GIL between BLAS calls, so
    processes with one thread each use the cores best.
    """
    distributed = _require_distributed()
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout="10s")
        except OSError as exc:
            raise InvalidParameterError(
                f"Cannot reach the Dask scheduler at {scheduler!r}: {exc}. Start one with"
                " 'dask scheduler' (and workers with 'dask worker ADDRESS'), or omit"
                " --scheduler for a local cluster."
            ) from None
        with client:
            yield client
        return
    import dask

    if n_workers is not None:
        check_int(n_workers, name="n_workers", low=1)
    check_int(threads_per_worker, name="threads_per_worker", low=1)
    # Dask's default worker environment sets MALLOC_TRIM_THRESHOLD_, which also switches off
    # glibc's dynamic mmap threshold: every large numpy temporary of a sketch update is then
    # a fresh mmap with its pages faulted in again. Keep one BLAS thread per worker, drop that.
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        cluster = distributed.LocalCluster(
            n_workers=n_workers or os.cpu_count() or 1,
            threads_per_worker=threads_per_worker,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
    with cluster, distributed.Client(cluster) as client:
        yield client


@contextmanager
def _client_scope(client: Client | None) -> Iterator[Client]:
    distributed = _require_distributed()
    if client is not None:
        yield client
        return
    try:
        current = distributed.get_client()
    except ValueError:  # no client in this process: a local cluster for this call only
        current = None
    if current is not None:
        yield current
        return
    with connect() as local:
        yield local


def _reference_blob(reference: Reference) -> bytes:
    with tempfile.TemporaryDirectory(prefix="embdrift-ref-") as tmp:
        return reference.save(Path(tmp) / "reference.npz").read_bytes()


def _is_dask_array(source: Any) -> bool:
    return type(source).__module__.startswith("dask.array") and hasattr(source, "to_delayed")


def _tree(
    client: Client,
    futures: list[Future[Any]],
    merge: Callable[..., Any],
    head: tuple[Any, ...],
    fan_in: int,
) -> Future[Any]:
    """Merge futures ``fan_in`` at a time, level by level, until one is left."""
    level = futures
    while len(level) > 1:
        level = [
            client.submit(merge, *head, *level[i : i + fan_in], pure=False)
            for i in range(0, len(level), fan_in)
        ]
    return level[0]


def _gather(
    client: Client,
    parts: list[Future[Any]],
    final: Future[Any],
    on_progress: ProgressCallback | None,
) -> Any:
    """Wait for ``final``, reporting finished partitions; on error cancel everything, raise."""
    distributed = _require_distributed()
    try:
        if on_progress is not None:
            on_progress(0, len(parts))
            for done, _ in enumerate(distributed.as_completed(parts), start=1):
                on_progress(done, len(parts))
        return final.result()
    except BaseException:
        client.cancel([*parts, final], force=True)  # type: ignore[no-untyped-call]
        raise


def _run_sketches(
    source: Any,
    reference: Reference,
    spec: dict[str, Any],
    *,
    client: Client | None,
    split_row_groups: bool,
    fan_in: int,
    on_progress: ProgressCallback | None,
) -> tuple[StreamBasis, dict[int, SketchSet]]:
    fan_in = check_int(fan_in, name="fan_in", low=2)
    basis = StreamBasis(
        reference,
        n_frequencies=spec["n_frequencies"],
        n_projections=spec["n_projections"],
        seed=spec["seed"],
    )
    spec = {**spec, "reference_id": reference.reference_id}
    with _client_scope(client) as cl:
        ref_future = cl.scatter(_reference_blob(reference), broadcast=True, hash=False)  # type: ignore[no-untyped-call]
        if _is_dask_array(source):
            if spec["window_ns"] is not None:
                raise InvalidParameterError(
                    "Windows by timestamp need files with a timestamp column; a dask array"
                    " has no timestamps. Pass the files instead."
                )
            parts = _submit_array(cl, source, ref_future, spec)
        else:
            partitions = list_partitions(source, split_row_groups=split_row_groups)
            parts = [
                cl.submit(
                    _sketch_file,
                    ref_future,
                    spec,
                    (p.path, p.row_group, p.first_row),
                    i,
                    pure=False,
                )
                for i, p in enumerate(partitions)
            ]
        final = _tree(cl, parts, _merge, (ref_future, spec), fan_in)
        blobs: dict[int, bytes] = _gather(cl, parts, final, on_progress)
    out: dict[int, SketchSet] = {}
    for key, blob in blobs.items():
        merged = SketchSet.from_bytes(blob, basis=basis)
        # A fresh set seeded with the caller's seed receives the merge, so the result's
        # settings (and its reservoir's future keys) are the caller's, not a partition's.
        fresh = SketchSet(
            basis,
            quantile_k=spec["quantile_k"],
            reservoir_size=spec["reservoir_size"],
            seed=spec["seed"],
        )
        out[key] = fresh.merge(merged)
    return basis, out


def _submit_array(
    client: Client, array: Any, ref_future: Future[Any], spec: dict[str, Any]
) -> list[Any]:
    if array.ndim != 2:
        raise InvalidEmbeddingsError(
            f"The dask array must be 2-D (rows, dimensions); got shape {array.shape}."
        )
    if len(array.chunks[1]) != 1:
        array = array.rechunk({1: -1})  # a block must hold whole rows
    blocks = array.to_delayed()[:, 0].tolist()
    block_futures = client.compute(blocks)  # type: ignore[no-untyped-call]
    starts = np.concatenate([[0], np.cumsum(array.chunks[0])[:-1]]).astype(int)
    return [
        client.submit(_sketch_block, ref_future, spec, fut, i, int(starts[i]), pure=False)
        for i, fut in enumerate(block_futures)
    ]


def _spec(
    *,
    n_frequencies: int,
    n_projections: int,
    quantile_k: int,
    reservoir_size: int,
    seed: int,
    column: str | None,
    window: dt.timedelta | None,
    timestamp_column: str | None,
) -> dict[str, Any]:
    window_ns = None
    if window is not None:
        if not isinstance(window, dt.timedelta) or window <= dt.timedelta(0):
            raise InvalidParameterError(
                f"The 'window' parameter must be a positive datetime.timedelta; got {window!r}."
            )
        window_ns = int(np.timedelta64(window, "ns").astype(np.int64))
    return {
        "n_frequencies": check_int(n_frequencies, name="n_frequencies", low=1),
        "n_projections": check_int(n_projections, name="n_projections", low=1),
        "quantile_k": check_int(quantile_k, name="quantile_k", low=8, high=65535),
        "reservoir_size": check_int(reservoir_size, name="reservoir_size", low=0),
        "seed": check_int(seed, name="seed", low=0),
        "column": column,
        "window_ns": window_ns,
        "timestamp_column": timestamp_column if window is not None else None,
    }


def sketch_dataset(
    source: Any,
    reference: Reference,
    *,
    client: Client | None = None,
    n_frequencies: int = 512,
    n_projections: int = 16,
    quantile_k: int = 200,
    reservoir_size: int = 10_000,
    seed: int = 0,
    column: str | None = None,
    split_row_groups: bool = False,
    fan_in: int = 8,
    on_progress: ProgressCallback | None = None,
) -> SketchSet:
    """The :class:`SketchSet` of every row of a dataset, computed on Dask.

    Parameters
    ----------
    source : str, path, sequence of paths, or dask.array.Array
        A glob pattern (``'data/day=*/part-*.parquet'``), a file, a list of files (Parquet,
        ``.npy`` or ``.npz``; read by :func:`embdrift.io.read_embeddings`), or a 2-D dask
        array whose row blocks are the partitions. Workers open the files at these paths.
    reference : Reference
        The frozen reference; the workers receive it once each, as its saved bytes.
    client : distributed.Client, optional
        Where to run; default the current client, else a local cluster for this call.
    n_frequencies, n_projections, seed : int
        The :class:`StreamBasis` settings (give the same as the monitor that tests the
        result: :func:`check_dataset` does). ``seed`` also seeds the reservoirs.
    quantile_k, reservoir_size : int
        The :class:`SketchSet` settings; ``reservoir_size`` rows are shipped per partition.
    column : str, optional
        Parquet column with the embeddings (default as in ``read_embeddings``).
    split_row_groups : bool
        One task per Parquet row group instead of one per file.
    fan_in : int
        Sketch sets merged per merge task (the tree has depth ⌈log_fan_in(partitions)⌉).
    on_progress : callable, optional
        ``on_progress(done, total)`` as partitions finish.

    Returns
    -------
    SketchSet
        What one process feeding every row to one set would hold: sums and moments equal up
        to rounding, quantiles within ε(k), the reservoir an exact sample of the union. Ids
        are the files' ``id`` column (or npz ``ids``), else ``"<path>:<row in file>"``; for a
        dask array, the global row number (as a single-process run numbers rows).

    Raises
    ------
    DimensionMismatchError, InvalidEmbeddingsError
        A partition whose dimension differs from the reference's, or with NaN/inf rows; the
        message names the file and the row. The job is cancelled; nothing is half-merged.
    MissingExtraError
        dask[distributed] is not installed.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from embdrift import Reference
    >>> rng = np.random.default_rng(0)
    >>> ref = Reference.fit(rng.normal(size=(400, 8)), n_components=3)
    >>> x = rng.normal(size=(3000, 8)).astype(np.float32)
    >>> with connect(n_workers=1) as client:
    ...     sketches = sketch_dataset(da.from_array(x, chunks=(1000, 8)), ref, client=client)
    >>> sketches.count
    3000
    >>> single = SketchSet(sketches.basis).update(x)
    >>> bool(np.allclose(sketches.rff.feature_sum, single.rff.feature_sum, rtol=1e-5))
    True
    """
    spec = _spec(
        n_frequencies=n_frequencies,
        n_projections=n_projections,
        quantile_k=quantile_k,
        reservoir_size=reservoir_size,
        seed=seed,
        column=column,
        window=None,
        timestamp_column=None,
    )
    _, out = _run_sketches(
        source,
        reference,
        spec,
        client=client,
        split_row_groups=split_row_groups,
        fan_in=fan_in,
        on_progress=on_progress,
    )
    return out[0]


@dataclass(frozen=True, slots=True)
class SketchWindow:
    """The merged sketches of one time window [start, end)."""

    start: np.datetime64
    end: np.datetime64
    sketches: SketchSet


def sketch_windows(
    source: Any,
    reference: Reference,
    *,
    window: dt.timedelta,
    timestamp_column: str = "timestamp",
    client: Client | None = None,
    n_frequencies: int = 512,
    n_projections: int = 16,
    quantile_k: int = 200,
    reservoir_size: int = 10_000,
    seed: int = 0,
    column: str | None = None,
    split_row_groups: bool = False,
    fan_in: int = 8,
    on_progress: ProgressCallback | None = None,
) -> list[SketchWindow]:
    """One :class:`SketchSet` per tumbling time window, in one pass over the dataset.

    Each partition groups its rows by ``floor(timestamp / window)`` (windows aligned to the
    epoch, as :class:`StreamMonitor` aligns them) and sketches each group; merge tasks fold
    the sets key by key. Rows need not be sorted, within or across files: a window that spans
    several files is merged from all of them. Other parameters as :func:`sketch_dataset`;
    timestamps are a Parquet column (``timestamp_column``: datetime or numeric seconds) or the
    npz array ``timestamps``. Returns the windows that hold rows, oldest first.
    """
    spec = _spec(
        n_frequencies=n_frequencies,
        n_projections=n_projections,
        quantile_k=quantile_k,
        reservoir_size=reservoir_size,
        seed=seed,
        column=column,
        window=window,
        timestamp_column=timestamp_column,
    )
    _, out = _run_sketches(
        source,
        reference,
        spec,
        client=client,
        split_row_groups=split_row_groups,
        fan_in=fan_in,
        on_progress=on_progress,
    )
    step = spec["window_ns"]
    return [
        SketchWindow(
            start=np.datetime64(key * step, "ns"),
            end=np.datetime64((key + 1) * step, "ns"),
            sketches=out[key],
        )
        for key in sorted(out)
    ]


def _monitor(
    reference: Reference | StreamMonitor, alpha: float, n_calibration: int, seed: int
) -> StreamMonitor:
    if isinstance(reference, StreamMonitor):
        return reference
    return StreamMonitor(reference, alpha=alpha, n_calibration=n_calibration, seed=seed)


def _monitor_settings(monitor: StreamMonitor) -> dict[str, Any]:
    return {
        "n_frequencies": monitor.basis.n_frequencies,
        "n_projections": monitor.basis.n_projections,
        "quantile_k": monitor.quantile_k,
        "reservoir_size": monitor.reservoir_size,
        "seed": monitor.basis.seed,
    }


def check_dataset(
    source: Any,
    reference: Reference | StreamMonitor,
    *,
    alpha: float = 0.05,
    n_calibration: int = 500,
    seed: int = 0,
    client: Client | None = None,
    column: str | None = None,
    split_row_groups: bool = False,
    fan_in: int = 8,
    on_progress: ProgressCallback | None = None,
) -> DriftResult:
    """Test a distributed current window against the reference, on its merged sketches.

    The dataset is sketched with :func:`sketch_dataset` on the monitor's basis and tested by
    :meth:`StreamMonitor.test`: the sketch statistics against the null calibrated through the
    sketches at this window size, combined by min-p (``DriftResult.method == "sketch"``).
    The decision is the one the single-process sketch test makes on the same rows, up to the
    rounding of sums and the KLL error of the quantile statistics.

    ``reference`` is a :class:`Reference` (a monitor is built with ``alpha``,
    ``n_calibration`` and ``seed``) or a :class:`StreamMonitor` whose settings are used as
    they are. Other parameters as :func:`sketch_dataset`.
    """
    monitor = _monitor(reference, alpha, n_calibration, seed)
    sketches = sketch_dataset(
        source,
        monitor.reference,
        client=client,
        column=column,
        split_row_groups=split_row_groups,
        fan_in=fan_in,
        on_progress=on_progress,
        **_monitor_settings(monitor),
    )
    return monitor.test(sketches)


def check_windows(
    source: Any,
    reference: Reference | StreamMonitor,
    *,
    window: dt.timedelta,
    timestamp_column: str = "timestamp",
    alpha: float = 0.05,
    n_calibration: int = 500,
    seed: int = 0,
    client: Client | None = None,
    column: str | None = None,
    split_row_groups: bool = False,
    fan_in: int = 8,
    on_progress: ProgressCallback | None = None,
) -> list[WindowResult]:
    """A drift series: one :class:`WindowResult` per tumbling time window, in one pass.

    Windows are sketched by :func:`sketch_windows` and tested oldest first by
    :meth:`StreamMonitor.test`; windows with fewer than the monitor's ``min_window_rows``
    rows are skipped (as the monitor skips them), and the alert state follows the monitor's
    rule (``consecutive`` drifted windows raise it, a quiet window clears it). The results
    are those a :class:`StreamMonitor` with ``window=window`` gives when fed the same rows in
    time order, up to rounding and KLL error. Parameters as :func:`check_dataset`.
    """
    monitor = _monitor(reference, alpha, n_calibration, seed)
    windows = sketch_windows(
        source,
        monitor.reference,
        window=window,
        timestamp_column=timestamp_column,
        client=client,
        column=column,
        split_row_groups=split_row_groups,
        fan_in=fan_in,
        on_progress=on_progress,
        **_monitor_settings(monitor),
    )
    out: list[WindowResult] = []
    run = 0
    for w in windows:
        if w.sketches.count < monitor.min_window_rows:
            continue
        result = monitor.test(w.sketches)
        run = run + 1 if result.drifted else 0
        sample = w.sketches.reservoir
        top = np.argsort(sample.keys)[::-1][:20]
        out.append(
            WindowResult(
                index=len(out),
                start=w.start,
                end=w.end,
                result=result,
                alert=run >= monitor.consecutive,
                example_ids=tuple(str(i) for i in sample.ids[top]),
            )
        )
    return out


def fit_reference(
    source: Any,
    *,
    sample_size: int = 20_000,
    client: Client | None = None,
    seed: int = 0,
    column: str | None = None,
    split_row_groups: bool = False,
    fan_in: int = 8,
    on_progress: ProgressCallback | None = None,
    **fit_options: Any,
) -> Reference:
    """Fit a :class:`Reference` on a distributed reference window.

    Draws a uniform sample of ``sample_size`` rows without replacement from all partitions
    (A-Res reservoirs per partition, merged in a tree: an exact sample of the union) and calls
    :meth:`Reference.fit` on it with ``seed`` and ``fit_options``. The module's Notes say why
    a sample and not merged moment sketches. Files as in :func:`sketch_dataset`.
    """
    sample_size = check_int(sample_size, name="sample_size", low=20)
    fan_in = check_int(fan_in, name="fan_in", low=2)
    partitions = list_partitions(source, split_row_groups=split_row_groups)
    dim = _first_dim(partitions[0], column)
    spec = {"dim": dim, "column": column, "sample_size": sample_size, "seed": seed}
    with _client_scope(client) as cl:
        parts = [
            cl.submit(_reservoir_file, spec, (p.path, p.row_group, p.first_row), i, pure=False)
            for i, p in enumerate(partitions)
        ]
        final = _tree(cl, parts, _merge_reservoirs, (), fan_in)
        blob: bytes = _gather(cl, parts, final, on_progress)
    sample = WeightedReservoir.from_bytes(blob)
    # Rows in id order: the fit does not depend on the order keys left them in.
    rows = sample.rows[np.argsort(sample.ids, kind="stable")]
    return Reference.fit(rows, seed=seed, **fit_options)


def _first_dim(part: Partition, column: str | None) -> int:
    """The embedding dimension of the first partition (every other must match it)."""
    suffix = Path(part.path).suffix.lower()
    if suffix == ".npy":
        shape = np.load(part.path, mmap_mode="r", allow_pickle=False).shape  # header only
        if len(shape) == 2:
            return int(shape[1])
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        if pq.ParquetFile(part.path).metadata.num_row_groups:
            first = Partition(part.path, 0, 0)
            return int(_read_row_group(first, column, "timestamp")[0].shape[1])
    return int(read_embeddings(part.path, column=column).embeddings.shape[1])
