"""The default bundle of sketches for one reference: one matmul per batch feeds them all."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from embdrift._validation import as_embeddings, check_int
from embdrift.errors import IncompatibleSketchError, SketchFormatError
from embdrift.stream import _codec
from embdrift.stream.basis import StreamBasis
from embdrift.stream.sketches import (
    MeanSketch,
    MomentSketch,
    ProjectionQuantiles,
    RFFMeanSketch,
    WeightedReservoir,
    _check_basis,
    _ids_for,
    _weights_for,
)
from embdrift.stream.statistics import ReferenceSide, WindowView

__all__ = ["SketchSet"]


class SketchSet:
    """RFF mean embedding, moments, full-dimension mean, KLL quantiles and a weighted
    reservoir, for one basis.

    Parameters
    ----------
    basis : StreamBasis
        Frozen frequencies and projections of one reference.
    quantile_k : int
        KLL accuracy parameter (default 200: rank error 1.33% at 99% confidence).
    reservoir_size : int
        Rows kept by the weighted reservoir (default 10,000); 0 keeps none.
    seed : int
        Seeds the reservoir's keys.

    Notes
    -----
    Each sketch's error guarantee is stated on its class: :class:`RFFMeanSketch` (unbiased
    for the exact kernel MMD² with a reported standard error), :class:`MomentSketch` and
    :class:`MeanSketch` (exact up to rounding), :class:`ProjectionQuantiles` (KLL rank error
    ε(k)) and :class:`WeightedReservoir` (an exact A-Res sample). State size is independent of
    the rows seen except for KLL's O(k log(n/k)) growth; :meth:`to_bytes` gives it.

    A merge of sets built for different references raises :class:`IncompatibleSketchError`
    naming both reference ids.

    Examples
    --------
    >>> import numpy as np
    >>> from embdrift import Reference
    >>> rng = np.random.default_rng(0)
    >>> basis = StreamBasis(Reference.fit(rng.normal(size=(400, 8)), n_components=3))
    >>> a = SketchSet(basis, reservoir_size=100).update(rng.normal(size=(500, 8)))
    >>> b = SketchSet(basis, reservoir_size=100).update(rng.normal(size=(700, 8)))
    >>> a.merge(b).count
    1200
    """

    _kind = "SketchSet"

    def __init__(
        self,
        basis: StreamBasis,
        *,
        quantile_k: int = 200,
        reservoir_size: int = 10_000,
        seed: int = 0,
    ) -> None:
        self.basis = _check_basis(basis)
        self.quantile_k = check_int(quantile_k, name="quantile_k", low=8, high=65535)
        self.reservoir_size = check_int(reservoir_size, name="reservoir_size", low=0)
        self.seed = check_int(seed, name="seed", low=0)
        self.rff = RFFMeanSketch(basis)
        self.moments = MomentSketch(basis)
        self.means = MeanSketch(basis)
        self.quantiles = ProjectionQuantiles(basis, self.quantile_k)
        self.reservoir = WeightedReservoir(max(self.reservoir_size, 1), seed=self.seed)

    @property
    def count(self) -> int:
        return self.rff.count

    @property
    def reference_id(self) -> str:
        return self.basis.reference_id

    def update(
        self,
        batch: npt.ArrayLike,
        *,
        ids: Sequence[Any] | np.ndarray | None = None,
        weights: npt.ArrayLike | None = None,
    ) -> SketchSet:
        """Add the rows of ``batch`` (m, d) to every sketch; returns self.

        ``ids`` (one per row, unique within the batch) default to running row numbers;
        ``weights`` (positive) only affect the reservoir's sampling.
        """
        x = as_embeddings(batch, name="batch", dim=self.basis.dim)
        # ids and weights are validated before any sketch changes: nothing is half-applied.
        id_arr = _ids_for(ids, x.shape[0], start=self.count)
        w = None if weights is None else _weights_for(weights, x.shape[0])
        features = self.basis._features(x)
        if self.reservoir_size:
            self.reservoir._update(x, id_arr, w)
        self.rff._update(features)
        self.moments._update(features)
        self.means._update(x)
        self.quantiles._update(features)
        return self

    def merge(self, other: SketchSet) -> SketchSet:
        """Fold ``other`` into self (same basis, k and reservoir size); returns self."""
        if not isinstance(other, SketchSet):
            raise TypeError(f"Cannot merge a SketchSet with a {type(other).__name__}.")
        self.basis.check_same(other.basis.basis_id, what="a SketchSet")
        if (other.quantile_k, other.reservoir_size) != (self.quantile_k, self.reservoir_size):
            raise IncompatibleSketchError(
                f"Cannot merge SketchSets with (quantile_k, reservoir_size) ="
                f" {(self.quantile_k, self.reservoir_size)} and"
                f" {(other.quantile_k, other.reservoir_size)}; build both with the same options."
            )
        self.rff.merge(other.rff)
        self.moments.merge(other.moments)
        self.means.merge(other.means)
        self.quantiles.merge(other.quantiles)
        self.reservoir.merge(other.reservoir)
        return self

    def copy(self) -> SketchSet:
        return SketchSet.from_bytes(self.to_bytes(), basis=self.basis)

    def view(self, reference: ReferenceSide) -> WindowView:
        """The window summaries the drift statistics read (see ``statistics.WindowView``)."""
        return WindowView.from_sketches(
            self.rff,
            self.moments,
            self.quantiles,
            self.means,
            reference=reference,
            pc1_edges=self.basis.pc1_edges,
        )

    def to_bytes(self) -> bytes:
        meta = {
            "basis_id": self.basis.basis_id,
            "reference_id": self.basis.reference_id,
            "quantile_k": self.quantile_k,
            "reservoir_size": self.reservoir_size,
            "seed": self.seed,
        }
        parts = {
            "rff": self.rff.to_bytes(),
            "moments": self.moments.to_bytes(),
            "means": self.means.to_bytes(),
            "quantiles": self.quantiles.to_bytes(),
            "reservoir": self.reservoir.to_bytes(),
        }
        arrays = {key: np.frombuffer(blob, dtype=np.uint8) for key, blob in parts.items()}
        return _codec.encode(self._kind, meta, arrays)

    @classmethod
    def from_bytes(cls, data: bytes, *, basis: StreamBasis) -> SketchSet:
        meta, arrays = _codec.decode(data, cls._kind)
        basis.check_same(str(meta.get("basis_id")), what="a serialised SketchSet")
        out = cls(
            basis,
            quantile_k=int(meta["quantile_k"]),
            reservoir_size=int(meta["reservoir_size"]),
            seed=int(meta["seed"]),
        )
        keys = ("rff", "moments", "means", "quantiles", "reservoir")
        missing = [key for key in keys if key not in arrays]
        if missing:
            raise SketchFormatError(
                f"The serialised SketchSet lacks {missing}; it was written by another version"
                " of embdrift. Rebuild the sketches from the data."
            )
        blobs = {key: bytes(arrays[key]) for key in keys}
        out.rff = RFFMeanSketch.from_bytes(blobs["rff"], basis=basis)
        out.moments = MomentSketch.from_bytes(blobs["moments"], basis=basis)
        out.means = MeanSketch.from_bytes(blobs["means"], basis=basis)
        out.quantiles = ProjectionQuantiles.from_bytes(blobs["quantiles"], basis=basis)
        out.reservoir = WeightedReservoir.from_bytes(blobs["reservoir"])
        return out

    def __repr__(self) -> str:
        return (
            f"SketchSet(reference_id={self.reference_id!r}, count={self.count},"
            f" quantile_k={self.quantile_k}, reservoir_size={self.reservoir_size})"
        )
