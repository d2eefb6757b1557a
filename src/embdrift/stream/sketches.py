"""Mergeable sketches: bounded state, ``update(batch) -> self``, ``merge(other) -> self``,
``to_bytes()`` / ``from_bytes()`` without pickle, and a stated error guarantee each.

* :class:`RFFMeanSketch` - sums of random Fourier features: streaming unbiased MMD².
* :class:`MomentSketch` - count, mean and covariance of the frozen projections.
* :class:`QuantileSketch` - one Apache DataSketches KLL sketch of 1-D values;
  :class:`ProjectionQuantiles` holds one per frozen projection plus the reconstruction error.
* :class:`WeightedReservoir` - a weighted random sample without replacement (A-Res), with ids.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from datasketches import kll_floats_sketch

from embdrift._validation import as_embeddings, check_int, check_rng
from embdrift.errors import IncompatibleSketchError, InvalidParameterError, SketchFormatError
from embdrift.stream import _codec
from embdrift.stream.basis import BatchFeatures, StreamBasis

__all__ = [
    "MeanSketch",
    "MomentSketch",
    "ProjectionQuantiles",
    "QuantileSketch",
    "RFFMeanSketch",
    "WeightedReservoir",
    "frechet_distance",
    "rank_error",
    "rff_mmd2",
]


def _check_basis(basis: Any) -> StreamBasis:
    if not isinstance(basis, StreamBasis):
        raise TypeError(
            f"The 'basis' parameter must be a StreamBasis; got {type(basis).__name__}."
            " Build one with StreamBasis(reference)."
        )
    return basis


def _check_kind(other: Any, cls: type) -> None:
    if not isinstance(other, cls):
        raise TypeError(f"Cannot merge a {cls.__name__} with a {type(other).__name__}.")


# ====================================================================== RFF mean embedding
def rff_mmd2(sum_x: np.ndarray, n: int, sum_y: np.ndarray, m: int) -> float:
    """Unbiased MMD² from random-feature sums ``sum_x = Σ phi(x_i)`` (n rows) and ``sum_y``.

    With ``||phi||² = 1``: Σ_{i≠j} phi(x_i).phi(x_j) = ||sum_x||² − n, hence (Gretton et al.
    (2012), "A Kernel Two-Sample Test", JMLR 13, Eq. 3, with the kernel replaced by the
    random-feature kernel ``phi(x).phi(y)``)::

        MMD²_u = (||S_x||² − n) / (n(n−1)) + (||S_y||² − m) / (m(m−1)) − 2 S_x.S_y / (nm)
    """
    return float(_rff_terms(sum_x, n, sum_y, m).sum())


def _rff_terms(sum_x: np.ndarray, n: int, sum_y: np.ndarray, m: int) -> np.ndarray:
    """Per-frequency contributions t_j (D,) whose sum is the unbiased RFF MMD²."""
    d2 = sum_x.shape[-1] // 2
    px = sum_x[..., :d2] ** 2 + sum_x[..., d2:] ** 2
    py = sum_y[..., :d2] ** 2 + sum_y[..., d2:] ** 2
    cross = sum_x[..., :d2] * sum_y[..., :d2] + sum_x[..., d2:] * sum_y[..., d2:]
    return (px - n / d2) / (n * (n - 1)) + (py - m / d2) / (m * (m - 1)) - 2.0 * cross / (n * m)


class RFFMeanSketch:
    """Mean embedding of the stream in random Fourier features of the frozen RBF kernel.

    State: the row count and the feature sum ``S = Σ_i phi(x_i)`` (2D float64 values), so
    merging is addition and the state never grows.

    Parameters
    ----------
    basis : StreamBasis
        Frozen frequencies (D of them) drawn from the reference's kernel.

    Notes
    -----
    Error guarantee. For fixed rows, the RFF MMD² (:func:`rff_mmd2`) is an average over the D
    frequencies of bounded terms t_j whose expectation over the frequency draw is the exact
    kernel MMD²_u of the same rows (Rahimi & Recht (2007), "Random Features for Large-Scale
    Kernel Machines", NIPS 20, Claim 1: E_w phi(x).phi(y) = k(x, y)). It is therefore unbiased
    for the exact statistic, with standard error sd(t_j) / sqrt(D), which
    :meth:`mmd2_with_error` returns from the sketches themselves; each t_j lies in [−2.1, 4]
    (n, m ≥ 20), so by Hoeffding |MMD²_rff − MMD²_u| ≤ 6.1 sqrt(ln(2/δ) / (2D)) with
    probability 1 − δ in the worst case.
    Decisions do not rely on this bound: the monitor calibrates the null of the RFF statistic
    itself (:class:`~embdrift.stream.SketchNull`).

    Examples
    --------
    >>> import numpy as np
    >>> from embdrift import Reference
    >>> rng = np.random.default_rng(0)
    >>> basis = StreamBasis(Reference.fit(rng.normal(size=(400, 8)), n_components=3))
    >>> a = RFFMeanSketch(basis).update(rng.normal(size=(300, 8)))
    >>> b = RFFMeanSketch(basis).update(rng.normal(size=(300, 8)) + 1.0)
    >>> a.mmd2(b) > 0.05
    True
    """

    _kind = "RFFMeanSketch"

    def __init__(self, basis: StreamBasis) -> None:
        self.basis = _check_basis(basis)
        self._count = 0
        self._sum = np.zeros(2 * basis.n_frequencies, dtype=np.float64)

    @property
    def count(self) -> int:
        return self._count

    @property
    def feature_sum(self) -> np.ndarray:
        """Σ phi(x_i) over the rows seen (a copy)."""
        return self._sum.copy()

    @property
    def mean_embedding(self) -> np.ndarray:
        """The empirical mean embedding S / n (2D,)."""
        return self._sum / max(self._count, 1)

    def update(self, batch: npt.ArrayLike) -> RFFMeanSketch:
        return self._update(self.basis.features(batch))

    def _update(self, features: BatchFeatures) -> RFFMeanSketch:
        angles = features.angles
        scale = 1.0 / np.sqrt(self.basis.n_frequencies)
        d2 = self.basis.n_frequencies
        self._sum[:d2] += np.cos(angles).sum(axis=0, dtype=np.float64) * scale
        self._sum[d2:] += np.sin(angles).sum(axis=0, dtype=np.float64) * scale
        self._count += features.n_rows
        return self

    def merge(self, other: RFFMeanSketch) -> RFFMeanSketch:
        _check_kind(other, RFFMeanSketch)
        self.basis.check_same(other.basis.basis_id, what="an RFFMeanSketch")
        self._sum += other._sum
        self._count += other._count
        return self

    def mmd2(self, other: RFFMeanSketch) -> float:
        """Unbiased RFF MMD² between the rows of ``self`` and of ``other``."""
        return self.mmd2_with_error(other)[0]

    def mmd2_with_error(self, other: RFFMeanSketch) -> tuple[float, float]:
        """(RFF MMD², its standard error over the frequency draw sd(t_j) sqrt(D))."""
        self.basis.check_same(other.basis.basis_id, what="an RFFMeanSketch")
        if self._count < 2 or other._count < 2:
            raise InvalidParameterError(
                f"MMD² needs at least 2 rows per side; got {self._count} and {other._count}."
            )
        terms = _rff_terms(self._sum, self._count, other._sum, other._count)
        d2 = terms.size
        return float(terms.sum()), float(np.std(terms * d2, ddof=1) / np.sqrt(d2))

    def to_bytes(self) -> bytes:
        meta = {"basis_id": self.basis.basis_id, "count": self._count}
        return _codec.encode(self._kind, meta, {"sum": self._sum})

    @classmethod
    def from_bytes(cls, data: bytes, *, basis: StreamBasis) -> RFFMeanSketch:
        meta, arrays = _codec.decode(data, cls._kind)
        sketch = cls(basis)
        basis.check_same(meta["basis_id"], what="serialised RFFMeanSketch")
        sketch._count = int(meta["count"])
        sketch._sum = _array(arrays, "sum", (2 * basis.n_frequencies,), cls._kind)
        return sketch

    def __repr__(self) -> str:
        return f"RFFMeanSketch(count={self._count}, n_features={self._sum.size})"


def _array(arrays: dict[str, np.ndarray], key: str, shape: tuple[int, ...], kind: str) -> Any:
    if key not in arrays:
        raise SketchFormatError(f"The serialised {kind} lacks the array {key!r}.")
    arr = np.array(arrays[key], dtype=np.float64 if arrays[key].dtype.kind == "f" else None)
    if arr.shape != shape:
        raise SketchFormatError(
            f"The serialised {kind} array {key!r} has shape {arr.shape}, expected {shape};"
            " it was built with other settings."
        )
    return arr


# ====================================================================== moments
class MomentSketch:
    """Count, mean and covariance of the frozen (standardised) projections.

    Parameters
    ----------
    basis : StreamBasis
        The frozen projections (p of them, in reference standard deviations).

    Notes
    -----
    Each batch's mean and centred cross-product matrix M2 = Σ (z − z̄)(z − z̄)ᵀ are computed
    directly, then combined with the running state by the pairwise update of Chan, Golub &
    LeVeque (1979), "Updating Formulae and a Pairwise Algorithm for Computing Sample
    Variances", Stanford CS-TR-79-773, Eq. 2.1 (in its multivariate form)::

        δ = z̄_B − z̄_A,  n = n_A + n_B,  z̄ = z̄_A + δ n_B / n,
        M2 = M2_A + M2_B + δ δᵀ n_A n_B / n

    Error guarantee: exact statistics of the rows seen, up to float64 rounding; merging in any
    order gives the same count, mean and covariance up to rounding (the projections
    themselves are computed in float32, relative error ~1e-6).

    Statistics against another moment sketch (usually the reference's): ``mean_shift``
    ||z̄_Y − z̄_X||, ``spread_ratio`` tr Σ_Y / tr Σ_X, and the Fréchet distance between the two
    Gaussians N(z̄, Σ) (Dowson & Landau (1982), J. Multivariate Anal. 12, Eq. 2):
    ||z̄_X − z̄_Y||² + tr(Σ_X + Σ_Y − 2 (Σ_X^{1/2} Σ_Y Σ_X^{1/2})^{1/2}).
    """

    _kind = "MomentSketch"

    def __init__(self, basis: StreamBasis) -> None:
        self.basis = _check_basis(basis)
        p = basis.n_projections_
        self._count = 0
        self._mean = np.zeros(p)
        self._m2 = np.zeros((p, p))

    @property
    def count(self) -> int:
        return self._count

    @property
    def mean(self) -> np.ndarray:
        return self._mean.copy()

    @property
    def covariance(self) -> np.ndarray:
        """Unbiased sample covariance M2 / (n − 1)."""
        return self._m2 / max(self._count - 1, 1)

    def update(self, batch: npt.ArrayLike) -> MomentSketch:
        return self._update(self.basis.features(batch))

    def _update(self, features: BatchFeatures) -> MomentSketch:
        z = features.projections.astype(np.float64)
        mean = z.mean(axis=0)
        centred = z - mean
        self._combine(z.shape[0], mean, centred.T @ centred)
        return self

    def _combine(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        n_a = self._count
        n = n_a + n_b
        if n_b == 0:
            return
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / n)
        self._m2 = self._m2 + m2_b + np.outer(delta, delta) * (n_a * n_b / n)
        self._count = n

    def merge(self, other: MomentSketch) -> MomentSketch:
        _check_kind(other, MomentSketch)
        self.basis.check_same(other.basis.basis_id, what="a MomentSketch")
        self._combine(other._count, other._mean, other._m2)
        return self

    def to_bytes(self) -> bytes:
        meta = {"basis_id": self.basis.basis_id, "count": self._count}
        return _codec.encode(self._kind, meta, {"mean": self._mean, "m2": self._m2})

    @classmethod
    def from_bytes(cls, data: bytes, *, basis: StreamBasis) -> MomentSketch:
        meta, arrays = _codec.decode(data, cls._kind)
        sketch = cls(basis)
        basis.check_same(meta["basis_id"], what="serialised MomentSketch")
        p = basis.n_projections_
        sketch._count = int(meta["count"])
        sketch._mean = _array(arrays, "mean", (p,), cls._kind)
        sketch._m2 = _array(arrays, "m2", (p, p), cls._kind)
        return sketch

    def __repr__(self) -> str:
        return f"MomentSketch(count={self._count}, p={self._mean.size})"


# ====================================================================== full-dimension mean
class MeanSketch:
    """Count and sum of the rows in full dimension (centred on the reference mean).

    Parameters
    ----------
    basis : StreamBasis
        Gives the dimension and the reference mean the rows are centred on.

    Notes
    -----
    Error guarantee: the exact sum of the rows seen, accumulated in float64 (relative error
    ~1e-15 per addition); merging is addition, so any merge order gives the same sum up to
    rounding. The statistic it feeds is ``residual_mean_shift``: the norm of the window's
    mean shift outside the reference's outer PCA subspace (:meth:`StreamBasis.residual_mean`),
    as the batch check computes it.
    """

    _kind = "MeanSketch"

    def __init__(self, basis: StreamBasis) -> None:
        self.basis = _check_basis(basis)
        self._count = 0
        self._sum = np.zeros(basis.dim)

    @property
    def count(self) -> int:
        return self._count

    @property
    def centred_sum(self) -> np.ndarray:
        """Σ (x − reference mean) over the rows seen, (d,) float64."""
        return self._sum.copy()

    def update(self, batch: npt.ArrayLike) -> MeanSketch:
        return self._update(as_embeddings(batch, name="batch", dim=self.basis.dim))

    def _update(self, x: np.ndarray) -> MeanSketch:
        self._sum += x.sum(axis=0, dtype=np.float64) - x.shape[0] * self.basis._mean64
        self._count += x.shape[0]
        return self

    def merge(self, other: MeanSketch) -> MeanSketch:
        _check_kind(other, MeanSketch)
        self.basis.check_same(other.basis.basis_id, what="a MeanSketch")
        self._sum = self._sum + other._sum
        self._count += other._count
        return self

    def to_bytes(self) -> bytes:
        meta = {"basis_id": self.basis.basis_id, "count": self._count}
        return _codec.encode(self._kind, meta, {"sum": self._sum})

    @classmethod
    def from_bytes(cls, data: bytes, *, basis: StreamBasis) -> MeanSketch:
        meta, arrays = _codec.decode(data, cls._kind)
        sketch = cls(basis)
        basis.check_same(meta["basis_id"], what="serialised MeanSketch")
        sketch._count = int(meta["count"])
        sketch._sum = _array(arrays, "sum", (basis.dim,), cls._kind)
        return sketch

    def __repr__(self) -> str:
        return f"MeanSketch(count={self._count}, d={self._sum.size})"


def frechet_distance(
    mean_x: np.ndarray, cov_x: np.ndarray, mean_y: np.ndarray, cov_y: np.ndarray
) -> float:
    """Fréchet (2-Wasserstein²) distance between N(mean_x, cov_x) and N(mean_y, cov_y).

    Dowson & Landau (1982), Eq. 2; the matrix square roots come from symmetric
    eigendecompositions with negative rounding noise clipped to 0.
    """
    root_x = _sqrt_psd(cov_x)
    cross = _sqrt_psd(root_x @ cov_y @ root_x)
    diff = mean_x - mean_y
    value = float(diff @ diff + np.trace(cov_x) + np.trace(cov_y) - 2.0 * np.trace(cross))
    return max(value, 0.0)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    sym = 0.5 * (matrix + matrix.T)
    values, vectors = np.linalg.eigh(sym)
    return np.asarray((vectors * np.sqrt(np.maximum(values, 0.0))) @ vectors.T)


# ====================================================================== quantiles
def rank_error(k: int) -> float:
    """KLL normalised rank error ε(k) at 99% confidence (single quantile queries), as
    reported by Apache DataSketches (e.g. 0.0133 for k = 200)."""
    return float(kll_floats_sketch.get_normalized_rank_error(k, False))


class QuantileSketch:
    """A KLL quantile sketch of a stream of 1-D values (wraps DataSketches' ``kll_floats_sketch``).

    Parameters
    ----------
    k : int
        Accuracy parameter of KLL (default 200); state is O(k log(n / k)) values.

    Notes
    -----
    Error guarantee (Karnin, Lang & Liberty (2016), "Optimal Quantile Approximation in
    Streams", FOCS, Thm. 3; constants as measured by Apache DataSketches): with probability
    0.99, the rank of every queried value is off by at most ε(k) n, ε(200) ≈ 0.0133
    (:func:`rank_error`). Merging preserves the guarantee. KLL is randomised by the library,
    so two sketches of one stream agree within the bound, not byte for byte.
    """

    _kind = "QuantileSketch"

    def __init__(self, k: int = 200) -> None:
        self.k = check_int(k, name="k", low=8, high=65535)
        self._sketch = kll_floats_sketch(self.k)

    @property
    def count(self) -> int:
        return int(self._sketch.n)

    @property
    def rank_error(self) -> float:
        return rank_error(self.k)

    def update(self, values: npt.ArrayLike) -> QuantileSketch:
        arr = np.asarray(values)
        if arr.ndim != 1 or arr.dtype.kind not in "iuf":
            raise InvalidParameterError(
                f"QuantileSketch.update needs a 1-D array of real numbers; got shape"
                f" {arr.shape} dtype {arr.dtype}."
            )
        arr32 = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(arr32).all():
            raise InvalidParameterError("QuantileSketch.update needs finite values; got NaN/inf.")
        if arr32.size:
            self._sketch.update(arr32)
        return self

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        _check_kind(other, QuantileSketch)
        if other.k != self.k:
            raise IncompatibleSketchError(
                f"Cannot merge KLL sketches with k={self.k} and k={other.k}; use one k."
            )
        self._sketch.merge(other._sketch)
        return self

    def quantiles(self, ranks: npt.ArrayLike) -> np.ndarray:
        """Values at normalised ranks in [0, 1] (the sketch must not be empty)."""
        if self._sketch.is_empty():
            raise InvalidParameterError("Cannot query quantiles of an empty QuantileSketch.")
        return np.asarray(self._sketch.get_quantiles(np.asarray(ranks, dtype=np.float64)))

    def cdf(self, points: npt.ArrayLike) -> np.ndarray:
        """Estimated P(X <= t) at each (increasing) point t."""
        if self._sketch.is_empty():
            raise InvalidParameterError("Cannot query the CDF of an empty QuantileSketch.")
        pts = np.asarray(points, dtype=np.float32)
        return np.asarray(self._sketch.get_cdf(pts, True))[:-1]

    def copy(self) -> QuantileSketch:
        new = QuantileSketch(self.k)
        new._sketch = kll_floats_sketch.deserialize(self._sketch.serialize())
        return new

    def to_bytes(self) -> bytes:
        blob = np.frombuffer(self._sketch.serialize(), dtype=np.uint8)
        return _codec.encode(self._kind, {"k": self.k}, {"kll": blob})

    @classmethod
    def from_bytes(cls, data: bytes) -> QuantileSketch:
        meta, arrays = _codec.decode(data, cls._kind)
        return cls._from_blob(int(meta["k"]), arrays.get("kll"))

    @classmethod
    def _from_blob(cls, k: int, blob: np.ndarray | None) -> QuantileSketch:
        sketch = cls(k)
        if blob is None:
            raise SketchFormatError("The serialised QuantileSketch lacks its KLL bytes.")
        try:
            sketch._sketch = kll_floats_sketch.deserialize(bytes(blob.astype(np.uint8)))
        except (RuntimeError, ValueError) as exc:
            raise SketchFormatError(f"The KLL bytes are corrupt: {exc}.") from None
        if sketch._sketch.k != k:
            raise SketchFormatError(f"The KLL bytes hold k={sketch._sketch.k}, not k={k}.")
        return sketch

    def __repr__(self) -> str:
        return f"QuantileSketch(k={self.k}, count={self.count})"


class ProjectionQuantiles:
    """KLL quantile sketches of every frozen projection and of the reconstruction error.

    Parameters
    ----------
    basis : StreamBasis
        The frozen projections (the reference's top-k PCs, then random orthogonal directions).
    k : int
        KLL accuracy parameter of every sketch (default 200).

    Notes
    -----
    Holds ``basis.n_projections_`` sketches of standardised projections plus one of the
    residual norm outside the reference's outer PCA subspace (in reference residual stds):
    drift in directions the reference barely used moves that residual and no projection.
    Guarantee: each sketch has the rank error ε(k) of :class:`QuantileSketch`. Statistics built
    on them (:mod:`embdrift.stream.statistics`) state their own bounds in terms of ε(k).
    """

    _kind = "ProjectionQuantiles"

    def __init__(self, basis: StreamBasis, k: int = 200) -> None:
        self.basis = _check_basis(basis)
        self.k = check_int(k, name="k", low=8, high=65535)
        self._sketches = [QuantileSketch(self.k) for _ in range(basis.n_projections_ + 1)]
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    @property
    def projections(self) -> list[QuantileSketch]:
        """One sketch per projection (the first is PC1)."""
        return self._sketches[:-1]

    @property
    def residual(self) -> QuantileSketch:
        """The sketch of the reconstruction error."""
        return self._sketches[-1]

    def update(self, batch: npt.ArrayLike) -> ProjectionQuantiles:
        return self._update(self.basis.features(batch))

    def _update(self, features: BatchFeatures) -> ProjectionQuantiles:
        # Each batch is offered sorted: KLL's guarantee holds for any order of the stream, and
        # its compactions (which sort their buffers) run about twice as fast on sorted runs.
        cols = np.sort(features.projections.T, axis=1)
        for sketch, column in zip(self._sketches[:-1], cols, strict=True):
            sketch._sketch.update(column)
        self._sketches[-1]._sketch.update(np.sort(features.residuals))
        self._count += features.n_rows
        return self

    def merge(self, other: ProjectionQuantiles) -> ProjectionQuantiles:
        _check_kind(other, ProjectionQuantiles)
        self.basis.check_same(other.basis.basis_id, what="ProjectionQuantiles")
        if other.k != self.k:
            raise IncompatibleSketchError(
                f"Cannot merge ProjectionQuantiles with k={self.k} and k={other.k}; use one k."
            )
        for mine, theirs in zip(self._sketches, other._sketches, strict=True):
            mine.merge(theirs)
        self._count += other._count
        return self

    def copy(self) -> ProjectionQuantiles:
        new = ProjectionQuantiles(self.basis, self.k)
        new._sketches = [s.copy() for s in self._sketches]
        new._count = self._count
        return new

    def to_bytes(self) -> bytes:
        arrays = {
            f"kll{i}": np.frombuffer(s._sketch.serialize(), dtype=np.uint8)
            for i, s in enumerate(self._sketches)
        }
        meta = {"basis_id": self.basis.basis_id, "count": self._count, "k": self.k}
        return _codec.encode(self._kind, meta, arrays)

    @classmethod
    def from_bytes(cls, data: bytes, *, basis: StreamBasis) -> ProjectionQuantiles:
        meta, arrays = _codec.decode(data, cls._kind)
        basis.check_same(meta["basis_id"], what="serialised ProjectionQuantiles")
        k = int(meta["k"])
        sketch = cls(basis, k)
        sketch._sketches = [
            QuantileSketch._from_blob(k, arrays.get(f"kll{i}"))
            for i in range(basis.n_projections_ + 1)
        ]
        sketch._count = int(meta["count"])
        return sketch

    def __repr__(self) -> str:
        return (
            f"ProjectionQuantiles(k={self.k}, n_sketches={len(self._sketches)},"
            f" count={self._count})"
        )


# ====================================================================== reservoir
class WeightedReservoir:
    """A weighted random sample without replacement of at most ``capacity`` rows, with ids.

    Parameters
    ----------
    capacity : int
        Most rows kept.
    seed : int, Generator or None
        Seeds the random keys.

    Notes
    -----
    Algorithm A-Res of Efraimidis & Spirakis (2006), "Weighted random sampling with a
    reservoir", Inf. Process. Lett. 97(5), Alg. A: row i with weight w_i > 0 gets the key
    u_i^{1/w_i}, u_i ~ U(0, 1), and the sample is the ``capacity`` rows with the largest keys
    (kept here as log u_i / w_i, the same order). Guarantee: the sample is distributed exactly
    as ``capacity`` successive weighted draws without replacement (op. cit., Thm. 1); with unit
    weights it is a uniform sample. Merging keeps the largest keys of the union, which is the
    A-Res sample of the concatenated stream (keys are independent per row), so merge is exact,
    not approximate. A batch costs O(m) plus work only for rows whose key beats the current
    minimum (O(capacity log(n)) rows in all).
    """

    _kind = "WeightedReservoir"

    def __init__(self, capacity: int = 10_000, *, seed: int | np.random.Generator | None = 0):
        self.capacity = check_int(capacity, name="capacity", low=1)
        self._rng = check_rng(seed)
        self._count = 0
        self._dim: int | None = None
        self._keys = np.empty(0)
        self._rows = np.empty((0, 0), dtype=np.float32)
        self._ids = np.empty(0, dtype=str)

    @property
    def count(self) -> int:
        """Rows offered so far (not the sample size)."""
        return self._count

    @property
    def size(self) -> int:
        return int(self._keys.size)

    @property
    def rows(self) -> np.ndarray:
        return self._rows[: self.size].copy()

    @property
    def ids(self) -> np.ndarray:
        return self._ids[: self.size].copy()

    @property
    def keys(self) -> np.ndarray:
        return self._keys.copy()

    def update(
        self,
        batch: npt.ArrayLike,
        *,
        ids: Sequence[Any] | np.ndarray | None = None,
        weights: npt.ArrayLike | None = None,
    ) -> WeightedReservoir:
        """Offer the rows of ``batch``; ``ids`` default to their running row numbers."""
        x = as_embeddings(batch, name="batch", dim=self._dim)
        return self._update(x, _ids_for(ids, x.shape[0], start=self._count), weights)

    def _update(
        self, x: np.ndarray, ids: np.ndarray, weights: npt.ArrayLike | None
    ) -> WeightedReservoir:
        """``update`` for rows already validated (float32, finite, right dimension)."""
        m = x.shape[0]
        w = _weights_for(weights, m)
        keys = np.log(self._rng.random(m))
        if weights is not None:
            keys /= w
        self._offer(x, ids, keys)
        self._count += m
        return self

    def _offer(self, x: np.ndarray, ids: np.ndarray, keys: np.ndarray) -> None:
        if self._dim is None:
            self._dim = int(x.shape[1])
            self._ids = np.empty(0, dtype=ids.dtype)
        if self._rows.shape[0] < self.capacity:
            # Allocated once (np.empty does not touch the pages until rows are written).
            grown = np.empty((self.capacity, self._dim), dtype=np.float32)
            if self.size:
                grown[: self.size] = self._rows[: self.size]
            self._rows = grown
        elif x.shape[1] != self._dim:
            raise IncompatibleSketchError(
                f"This reservoir holds rows of dimension {self._dim}; got {x.shape[1]}."
            )
        if ids.dtype.itemsize > self._ids.dtype.itemsize:
            self._ids = self._ids.astype(ids.dtype)
        free = self.capacity - self.size
        if free > 0:
            take = min(free, keys.size)
            order = np.argsort(keys)[::-1] if take < keys.size else np.arange(keys.size)
            head = order[:take]
            self._rows[self.size : self.size + take] = x[head]
            self._keys = np.concatenate([self._keys, keys[head]])
            self._ids = np.concatenate([self._ids, ids[head].astype(self._ids.dtype)])
            keys, x, ids = keys[order[take:]], x[order[take:]], ids[order[take:]]
            if keys.size == 0:
                return
        # Full: only rows whose key beats the smallest kept key can enter.
        entering = np.flatnonzero(keys > self._keys.min())
        if entering.size == 0:
            return
        pool = np.concatenate([self._keys, keys[entering]])
        keep = np.argpartition(pool, pool.size - self.capacity)[pool.size - self.capacity :]
        keep_old = np.zeros(self.size, dtype=bool)
        keep_old[keep[keep < self.size]] = True
        new_idx = entering[keep[keep >= self.size] - self.size]
        slots = np.flatnonzero(~keep_old)
        self._keys[slots] = keys[new_idx]
        self._rows[slots] = x[new_idx]
        if ids.dtype.itemsize > self._ids.dtype.itemsize:
            self._ids = self._ids.astype(ids.dtype)
        self._ids[slots] = ids[new_idx]

    def merge(self, other: WeightedReservoir) -> WeightedReservoir:
        _check_kind(other, WeightedReservoir)
        if other.capacity != self.capacity:
            raise IncompatibleSketchError(
                f"Cannot merge reservoirs of capacity {self.capacity} and {other.capacity}."
            )
        if other.size:
            self._offer(other._rows[: other.size], other._ids[: other.size], other._keys)
        self._count += other._count
        return self

    def copy(self) -> WeightedReservoir:
        return WeightedReservoir.from_bytes(self.to_bytes())

    def to_bytes(self) -> bytes:
        meta = {
            "capacity": self.capacity,
            "count": self._count,
            "dim": self._dim,
            "rng": json.loads(json.dumps(self._rng.bit_generator.state)),
            "rng_name": type(self._rng.bit_generator).__name__,
        }
        arrays: dict[str, np.ndarray] = {
            "keys": self._keys,
            "rows": self._rows[: self.size],
            "ids": self._ids,
        }
        return _codec.encode(self._kind, meta, arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> WeightedReservoir:
        meta, arrays = _codec.decode(data, cls._kind)
        res = cls(int(meta["capacity"]))
        if meta.get("rng_name") != "PCG64":
            raise SketchFormatError(f"Unsupported reservoir generator {meta.get('rng_name')!r}.")
        res._rng.bit_generator.state = meta["rng"]
        res._count = int(meta["count"])
        res._dim = None if meta["dim"] is None else int(meta["dim"])
        try:
            res._keys = np.array(arrays["keys"], dtype=np.float64)
            res._rows = np.array(arrays["rows"], dtype=np.float32)
            res._ids = np.array(arrays["ids"])
        except KeyError as exc:
            raise SketchFormatError(f"The serialised reservoir lacks {exc}.") from None
        if not (res._keys.size == res._rows.shape[0] == res._ids.size <= res.capacity):
            raise SketchFormatError("The serialised reservoir's arrays disagree in length.")
        return res

    def __repr__(self) -> str:
        return f"WeightedReservoir(capacity={self.capacity}, size={self.size}, count={self._count})"


def _ids_for(ids: Sequence[Any] | np.ndarray | None, m: int, *, start: int) -> np.ndarray:
    if ids is None:
        return np.arange(start, start + m).astype(str)
    arr = np.asarray(ids)
    if arr.ndim != 1 or arr.size != m:
        raise InvalidParameterError(
            f"The 'ids' parameter must hold one id per row ({m}); got shape {arr.shape}."
        )
    if arr.dtype == object and all(isinstance(v, str | int | np.integer) for v in arr.tolist()):
        arr = np.array([str(v) for v in arr.tolist()])  # e.g. string columns read by pyarrow
    if arr.dtype.kind not in "iuUS":
        raise InvalidParameterError(
            f"The 'ids' parameter must hold ints or strings; got dtype {arr.dtype}."
        )
    out = arr.astype(str)
    if np.unique(out).size != m:
        raise InvalidParameterError(
            "The 'ids' parameter holds duplicate ids within one batch; ids must be unique."
        )
    return out


def _weights_for(weights: npt.ArrayLike | None, m: int) -> np.ndarray:
    if weights is None:
        return np.ones(m)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (m,) or not np.isfinite(w).all() or (w <= 0).any():
        raise InvalidParameterError(
            f"The 'weights' parameter must hold {m} finite positive values (one per row);"
            f" got shape {w.shape}."
        )
    return w
