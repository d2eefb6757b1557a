"""The frozen coordinates every streaming sketch works in, derived once from a Reference.

One float32 matrix product per batch gives both the random-Fourier-feature angles and the
frozen projections, so every sketch of a :class:`~embdrift.stream.SketchSet` shares it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from embdrift._validation import as_embeddings, check_int
from embdrift.errors import IncompatibleSketchError
from embdrift.reference import Reference

__all__ = ["BatchFeatures", "StreamBasis"]


@dataclass(frozen=True, slots=True)
class BatchFeatures:
    """What the sketches need from one batch of m rows.

    Attributes
    ----------
    angles : (m, n_frequencies) float32
        ``(x - mean) @ W.T``: the arguments of the random Fourier features.
    projections : (m, n_projections) float32
        Frozen projections in units of the reference standard deviation per direction.
    residuals : (m,) float32
        Norm of the part outside the reference's outer PCA subspace (``outer_components``
        PCs), in reference residual stds.
    """

    angles: np.ndarray
    projections: np.ndarray
    residuals: np.ndarray

    @property
    def n_rows(self) -> int:
        return int(self.projections.shape[0])


class StreamBasis:
    """Frozen random frequencies and projection directions for one :class:`Reference`.

    Parameters
    ----------
    reference : Reference
        The frozen reference: PCA mean and components, RBF bandwidth ``h``, PC1 bin edges and
        residual scale are taken from it, never refitted.
    n_frequencies : int
        Number of random frequencies D; the feature map has 2D coordinates
        ``phi(x) = D^{-1/2} [cos(W x), sin(W x)]`` (default 512, i.e. 1,024 random features,
        the size of the reference's own draw).
    n_projections : int
        Number of 1-D projections sketched by quantiles (default 16): the reference's top-k
        principal components first, then seeded random unit directions orthogonal to them
        (the reference keeps k components; these extra directions watch the rest of the
        space). Capped at the embedding dimension.
    seed : int
        Seeds the extra directions, and the frequencies beyond the reference's draw.

    Notes
    -----
    The frequencies are the reference's frozen draw (:attr:`Reference.rff_frequencies`,
    ``w ~ N(0, h^{-2} I_d)`` drawn once at fit, the spectral density of the RBF kernel
    ``k(x, y) = exp(-||x - y||^2 / (2 h^2))``), so the stream and the batch check's large-n
    path use one set of random features: its first D columns when D is at most the
    reference's J, all J plus D − J more drawn here from the same distribution (seeded)
    otherwise. Then ``E_w[phi(x) . phi(y)] = k(x, y)`` (Rahimi &
    Recht (2007), "Random Features for Large-Scale Kernel Machines", NIPS 20, Alg. 1, with the
    [cos, sin] pair of Sutherland & Schneider (2015), "On the Error of Random Fourier Features",
    UAI, Eq. 2). Because ``||phi(x)||^2 = 1`` exactly, the diagonal of the approximate kernel
    is known and MMD² can be computed in its unbiased form from feature sums alone.

    Features are computed on centred rows ``x - mean``: the RBF kernel is shift invariant and
    so is ``phi(x) . phi(y)``; centring keeps float32 products accurate.

    An extra direction ``u`` (unit, orthogonal to the k PCs) is standardised by
    ``sqrt(r / (d - k))`` with ``r`` the reference variance outside the top-k subspace (from the
    fit rows): the expected variance along a random direction of that complement.
    """

    def __init__(
        self,
        reference: Reference,
        *,
        n_frequencies: int = 512,
        n_projections: int = 16,
        seed: int = 0,
    ) -> None:
        if not isinstance(reference, Reference):
            raise TypeError(
                f"The 'reference' parameter must be an embdrift Reference; got"
                f" {type(reference).__name__}. Build one with Reference.fit(...)."
            )
        # The basis keeps what it computes with, not the Reference: a basis shared by the
        # monitors of several Reference objects of one id (StreamMonitor) keeps none alive.
        self._reference_id = reference.reference_id
        self._pc1_edges = np.array(reference.pc1_edges, dtype=np.float64)
        self._pc1_edges.setflags(write=False)
        self._smoothing = float(reference.params.smoothing)
        self._residual_scale = float(reference.residual_scale)
        self._outer_scale = float(reference.outer_scale)
        self.n_frequencies = check_int(n_frequencies, name="n_frequencies", low=1)
        self.n_projections = check_int(n_projections, name="n_projections", low=1)
        self.seed = check_int(seed, name="seed", low=0)
        pca = reference.projection
        d = pca.dim
        drawn = np.asarray(reference.rff_frequencies, dtype=np.float64).T  # (J, d)
        freq = drawn[: self.n_frequencies]
        if self.n_frequencies > drawn.shape[0]:
            more = np.random.default_rng([self.seed, 0xF4E9]).normal(
                size=(self.n_frequencies - drawn.shape[0], d)
            )
            freq = np.vstack([freq, more / reference.bandwidth])
        self._freq = freq
        rng = np.random.default_rng([self.seed, 0x5EED])
        comps = np.asarray(pca.components_, dtype=np.float64)
        k = comps.shape[0]
        n_proj = min(self.n_projections, d)
        n_extra = max(0, n_proj - k)
        directions = comps[:n_proj]
        scales = np.asarray(pca.scale_, dtype=np.float64)[:n_proj]
        if n_extra:
            raw = rng.normal(size=(d, n_extra))
            raw -= comps.T @ (comps @ raw)
            q, _ = np.linalg.qr(raw)
            extra = q.T[:n_extra]
            outside = max(pca.total_variance_ - float(pca.explained_variance_.sum()), 0.0)
            extra_scale = np.sqrt(max(outside / max(d - k, 1), np.finfo(np.float64).tiny))
            directions = np.vstack([directions, extra])
            scales = np.concatenate([scales, np.full(n_extra, extra_scale)])
        self._directions = directions
        self._scales = scales
        self._n_pcs = min(k, n_proj)
        # The reconstruction error is the norm outside the reference's outer subspace, as in
        # the batch check.
        self._components = np.asarray(reference.outer_projection.components_, dtype=np.float64)
        self._mean64 = np.asarray(pca.mean_, dtype=np.float64)
        self._mean32 = self._mean64.astype(np.float32)
        # One (d, D + p + outer PCs) float32 matrix: the per-batch product computes angles and
        # projections.
        self._matrix = np.ascontiguousarray(
            np.hstack([self._freq.T, (directions / scales[:, None]).T, self._components.T]),
            dtype=np.float32,
        )
        # The tag names the frequency source, so states saved by a basis that drew its own
        # frequencies (before they came from the reference) are refused, not misread.
        tag = f"{reference.reference_id}:{self.n_frequencies}:{n_proj}:{self.seed}:rff=reference"
        h = hashlib.sha256(tag.encode())
        self.basis_id = f"{reference.reference_id}/{h.hexdigest()[:8]}"

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        return int(self._mean64.shape[0])

    @property
    def n_projections_(self) -> int:
        """Number of projection directions actually used (``min(n_projections, d)``)."""
        return int(self._directions.shape[0])

    @property
    def n_pcs(self) -> int:
        """How many of the projections are reference principal components (the first ones)."""
        return self._n_pcs

    @property
    def reference_id(self) -> str:
        return self._reference_id

    @property
    def pc1_edges(self) -> np.ndarray:
        """The reference's PC1 histogram bin edges (read-only)."""
        return self._pc1_edges

    @property
    def smoothing(self) -> float:
        """The reference's additive histogram smoothing (KL / JS on PC1)."""
        return self._smoothing

    def __repr__(self) -> str:
        return (
            f"StreamBasis(reference_id={self.reference_id!r}, n_frequencies={self.n_frequencies},"
            f" n_projections={self.n_projections_}, seed={self.seed})"
        )

    # ------------------------------------------------------------------ computing
    def features(self, batch: npt.ArrayLike, *, name: str = "batch") -> BatchFeatures:
        """Validate a batch (m, d) and compute its :class:`BatchFeatures` in one matmul."""
        x = as_embeddings(batch, name=name, dim=self.dim)
        return self._features(x)

    def _features(self, x: np.ndarray) -> BatchFeatures:
        centred = x - self._mean32
        prod = centred @ self._matrix
        n_freq, n_proj = self.n_frequencies, self.n_projections_
        angles = prod[:, :n_freq]
        projections = prod[:, n_freq : n_freq + n_proj]
        pcs = prod[:, n_freq + n_proj :]
        sq = np.einsum("ij,ij->i", centred, centred) - np.einsum("ij,ij->i", pcs, pcs)
        residuals = np.sqrt(np.maximum(sq, 0.0)) / np.float32(self._residual_scale)
        return BatchFeatures(angles=angles, projections=projections, residuals=residuals)

    def exact_features(self, x: np.ndarray) -> BatchFeatures:
        """The same features in float64 (for calibration and for tests of the float32 path)."""
        centred = np.asarray(x, dtype=np.float64) - self._mean64
        angles = centred @ self._freq.T
        projections = (centred @ self._directions.T) / self._scales
        pcs = centred @ self._components.T
        sq = np.einsum("ij,ij->i", centred, centred) - np.einsum("ij,ij->i", pcs, pcs)
        residuals = np.sqrt(np.maximum(sq, 0.0)) / self._residual_scale
        return BatchFeatures(angles=angles, projections=projections, residuals=residuals)

    def residual_mean(self, centred_sum: np.ndarray, count: int) -> np.ndarray:
        """Mean of ``count`` rows outside the reference's outer PCA subspace, (d,) float64.

        ``(I − VᵀV) (Σ (x − μ) / count) / s`` with V the outer components, μ the reference mean
        and s the reference's residual RMS norm (``Reference.outer_scale``): the difference of
        two such means is the ``residual_mean_shift`` of the batch check.
        """
        mean = np.asarray(centred_sum, dtype=np.float64) / max(count, 1)
        inside = self._components.T @ (self._components @ mean)
        return (mean - inside) / self._outer_scale

    def check_same(self, other_id: str, *, what: str) -> None:
        """Raise :class:`IncompatibleSketchError` unless ``other_id`` is this basis."""
        if other_id != self.basis_id:
            raise IncompatibleSketchError(
                f"Cannot combine {what} of basis {other_id!r} with one of basis"
                f" {self.basis_id!r}: they belong to different references or sketch settings"
                f" (reference ids {other_id.split('/')[0]!r} and {self.reference_id!r})."
                " Build both with the same Reference and the same StreamBasis options."
            )
