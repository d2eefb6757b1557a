"""Frozen projections: a PCA fitted once on reference rows and then never refitted."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from embdrift._validation import as_embeddings, check_int
from embdrift.errors import DimensionMismatchError, InvalidParameterError, ReferenceFormatError

__all__ = ["FrozenPCA"]

#: Rows per float64 chunk when projecting (bounds the temporary copy to ~25 MB at d = 384).
_CHUNK_ROWS = 8192


class FrozenPCA:
    """Principal components of the reference, frozen so that every window is seen the same way.

    Parameters
    ----------
    n_components : int
        Number of leading components to keep. Reduced to ``min(n_components, d, n_fit - 1)``
        when the fit sample is smaller; the kept number is ``n_components_``.

    Notes
    -----
    The components are the leading eigenvectors of the sample covariance
    :math:`C = X_c^\top X_c / (n - 1)` (computed in float64, so fitting costs
    :math:`O(n d^2 + d^3)` and is linear in the number of rows).

    Sign convention, so that PC1 does not flip between fits: with ``align_to`` (the projection
    of the previous reference), each component is oriented to agree with the previous one
    (positive dot product), which rules a flip out. Without it, each component is oriented to
    have a positive dot product with the *uncentered* mean of the fit rows: sentence-embedding
    models share a common direction, which two samples estimate almost identically (on the
    real-text data in ``shared/data``, at most 3 flips of PC1 in 100 pairs of independent
    400-row fits, asserted by ``tests/test_projection.py``; scikit-learn's largest-loading rule
    flips about half the time there, since an embedding PC spreads its loadings over hundreds
    of coordinates). Where that dot product is numerically zero the largest loading is made
    positive.

    ``scale_`` holds the standard deviation of each component's scores on the fit rows, so
    ``standardize`` returns scores in units of the reference standard deviation.
    """

    def __init__(self, n_components: int = 10) -> None:
        self.n_components = n_components

    def fit(self, x: npt.ArrayLike, *, align_to: FrozenPCA | None = None) -> FrozenPCA:
        """Fit on the rows of ``x`` (n, d); returns self. ``align_to``: a previous projection
        of the same dimension whose component orientations are kept."""
        check_int(self.n_components, name="n_components", low=1)
        arr = as_embeddings(x, name="x", min_rows=3)
        n, d = arr.shape
        k = min(self.n_components, d, n - 1)
        mean = arr.mean(axis=0, dtype=np.float64)
        # Σ (x - mean)(x - mean)^T in float64, over chunks of rows (no (n, d) float64 copy).
        scatter = np.zeros((d, d))
        for start in range(0, n, _CHUNK_ROWS):
            centered = arr[start : start + _CHUNK_ROWS] - mean  # float64
            scatter += centered.T @ centered
        eigval, eigvec = np.linalg.eigh(scatter / (n - 1))
        order = np.argsort(eigval)[::-1][:k]
        components = eigvec[:, order].T
        components *= _orientation(components, mean, align_to)[:, None]
        self.mean_ = mean
        self.components_ = components
        self.explained_variance_ = np.maximum(eigval[order], 0.0)
        self.total_variance_ = float(np.maximum(eigval, 0.0).sum())
        self.n_components_ = k
        scores = self.transform(arr)
        self.scale_ = np.maximum(scores.std(axis=0, ddof=1), np.finfo(np.float64).tiny)
        return self

    @property
    def dim(self) -> int:
        """Embedding dimension the projection was fitted on."""
        return int(self.mean_.shape[0])

    @property
    def explained_variance_ratio_(self) -> np.ndarray:
        """Share of the total reference variance carried by each kept component."""
        return self.explained_variance_ / max(self.total_variance_, np.finfo(np.float64).tiny)

    def transform(self, x: npt.ArrayLike) -> np.ndarray:
        """Scores (n, k) of the rows of ``x`` on the frozen components, float64."""
        return self.scores_and_residuals(x)[0]

    def standardize(self, x: npt.ArrayLike) -> np.ndarray:
        """Scores divided by the reference score standard deviation (unitless)."""
        return self.transform(x) / self.scale_

    def residual_norm(self, x: npt.ArrayLike) -> np.ndarray:
        """Euclidean norm (n,) of each row's part outside the frozen top-k subspace.

        ``||(x - mean) - V^T V (x - mean)||`` computed as
        ``sqrt(max(||x - mean||^2 - ||V (x - mean)||^2, 0))``.
        """
        return self.scores_and_residuals(x)[1]

    def scores_and_residuals(
        self, x: npt.ArrayLike, *, outside: FrozenPCA | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw scores (n, k) and residual norms (n,) in one pass over the rows.

        The residual norms are those outside this projection's subspace, or outside that of
        ``outside``, a projection of the same mean (a wider one, say): one product with both
        sets of components serves both. Computed in float64 on chunks of ``_CHUNK_ROWS``
        rows, so the float64 copy of the centred rows stays a few MB whatever n is.
        """
        arr = as_embeddings(x, name="x", dim=self.dim)
        k = self.components_.shape[0]
        if outside is None or outside is self:
            components = self.components_
            inside = slice(0, k)
        elif np.array_equal(outside.mean_, self.mean_):
            components = np.vstack([self.components_, outside.components_])
            inside = slice(k, None)
        else:
            raise InvalidParameterError(
                "'outside' must be a projection of the same mean as this one (both truncated"
                " from one fit); project with each separately instead."
            )
        n = arr.shape[0]
        scores = np.empty((n, k))
        residuals = np.empty(n)
        for start in range(0, n, _CHUNK_ROWS):
            centered = arr[start : start + _CHUNK_ROWS] - self.mean_  # float64
            part = centered @ components.T
            kept = part[:, inside]
            sq = np.einsum("ij,ij->i", centered, centered) - np.einsum("ij,ij->i", kept, kept)
            scores[start : start + part.shape[0]] = part[:, :k]
            residuals[start : start + part.shape[0]] = np.sqrt(np.maximum(sq, 0.0))
        return scores, residuals

    def truncated(self, n_components: int, *, align_to: FrozenPCA | None = None) -> FrozenPCA:
        """The projection onto the leading ``n_components`` of this one, without refitting.

        Equal to fitting ``FrozenPCA(n_components)`` on the same rows (the same eigenvectors,
        oriented by the same rule, with ``align_to`` as in :meth:`fit`), for a fraction of the
        cost: a reference that needs a top-10 and a top-50 projection decomposes its
        covariance once.
        """
        k = check_int(n_components, name="n_components", low=1)
        if k > self.n_components_ and self.n_components_ < self.n_components:
            # This fit was capped by d or n - 1; the same cap applies to the smaller one.
            k = self.n_components_
        if k > self.n_components_:
            raise InvalidParameterError(
                f"Cannot truncate a projection with {self.n_components_} components to"
                f" {n_components}; fit one with at least that many."
            )
        out = FrozenPCA(n_components=n_components)
        components = self.components_[:k].copy()
        components *= _orientation(components, self.mean_, align_to)[:, None]
        out.mean_ = self.mean_
        out.components_ = components
        out.explained_variance_ = self.explained_variance_[:k].copy()
        out.total_variance_ = self.total_variance_
        out.scale_ = self.scale_[:k].copy()
        out.n_components_ = k
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as plain arrays (for ``np.savez``; no pickle)."""
        return {
            "pca_mean": self.mean_,
            "pca_components": self.components_,
            "pca_explained_variance": self.explained_variance_,
            "pca_total_variance": np.array(self.total_variance_),
            "pca_scale": self.scale_,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> FrozenPCA:
        """Rebuild a fitted projection from ``to_arrays`` output."""
        try:
            components = np.asarray(arrays["pca_components"], dtype=np.float64)
            pca = cls(n_components=int(components.shape[0]))
            pca.mean_ = np.asarray(arrays["pca_mean"], dtype=np.float64)
            pca.components_ = components
            pca.explained_variance_ = np.asarray(arrays["pca_explained_variance"], np.float64)
            pca.total_variance_ = float(arrays["pca_total_variance"])
            pca.scale_ = np.asarray(arrays["pca_scale"], dtype=np.float64)
        except KeyError as exc:
            raise ReferenceFormatError(
                f"The saved projection lacks the array {exc.args[0]!r}; the file is incomplete."
            ) from None
        pca.n_components_ = int(components.shape[0])
        if components.ndim != 2 or components.shape[1] != pca.mean_.shape[0]:
            raise ReferenceFormatError(
                f"The saved projection is inconsistent: components {components.shape}, mean"
                f" {pca.mean_.shape}."
            )
        return pca

    def __repr__(self) -> str:
        fitted = getattr(self, "n_components_", None)
        state = f", fitted on d={self.dim}" if fitted is not None else ""
        return f"FrozenPCA(n_components={self.n_components}{state})"


def _orientation(
    components: np.ndarray, mean: np.ndarray, align_to: FrozenPCA | None
) -> np.ndarray:
    """Signs (k,) that orient the components (see the class Notes)."""
    k = components.shape[0]
    top = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(k), top])
    along_mean = components @ mean
    usable = np.abs(along_mean) > 1e-6 * max(float(np.linalg.norm(mean)), 1e-12)
    signs = np.where(usable, np.sign(along_mean), signs)
    if align_to is not None:
        if align_to.dim != components.shape[1]:
            raise DimensionMismatchError(
                f"align_to has dimension {align_to.dim} but the data has {components.shape[1]};"
                " align only to a projection of the same embedding model."
            )
        shared = min(k, align_to.n_components_)
        dots = np.einsum("kd,kd->k", components[:shared], align_to.components_[:shared])
        signs[:shared] = np.where(dots != 0, np.sign(dots), signs[:shared])
    return signs
