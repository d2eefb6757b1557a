"""The frozen reference and the batch drift check.

``Reference.fit`` splits the reference window in two: a *fit* part that learns everything
(PCA, kernel bandwidth, PC1 bins, residual scale) and a *test* part that is only ever compared.
A projection fitted on the rows it is then tested against over-states their variance along its
own top components, and projection metrics then alarm with no drift at all (DESIGN.md, "Fit on
one part, test on the other"). With the split, the test rows and a current window drawn from
the same distribution are exchangeable, and permutation p-values are exact.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embdrift._validation import (
    as_embeddings,
    check_int,
    check_probability,
    check_rng,
)
from embdrift.errors import InsufficientDataError, InvalidParameterError, ReferenceFormatError
from embdrift.projection import FrozenPCA
from embdrift.results import DriftResult, MetricResult
from embdrift.stats.metrics import median_bandwidth
from embdrift.stats.permutation import combine_min_p, permutation_masks
from embdrift.stats.twosample import (
    EnergyStatistic,
    HistogramDivergence,
    KernelMMD,
    MeanShift,
    SpreadRatio,
    TwoSampleStatistic,
    Wasserstein1D,
)

__all__ = ["METRICS", "Reference", "ReferenceParams"]

FORMAT_NAME = "embdrift.reference"
FORMAT_VERSION = 1

#: Metric name -> what its value means. Effect sizes are listed in ``_effect_size``.
METRICS: Mapping[str, str] = {
    "mmd": "unbiased MMD² with the frozen RBF kernel (full dimension)",
    "energy": "energy distance 2E‖X−Y‖ − E‖X−X′‖ − E‖Y−Y′‖ (full dimension)",
    "wasserstein_pc1": "1-D Wasserstein-1 on PC1, in reference PC1 standard deviations",
    "sliced_wasserstein": "mean 1-D Wasserstein-1 over the top-k PCs, in reference stds",
    "kl_pc1": "KL(current ‖ reference) of PC1 histograms, nats, smoothed",
    "js_pc1": "Jensen–Shannon divergence of PC1 histograms, nats (≤ ln 2)",
    "mean_shift": "norm of the mean shift in standardized top-k PCA space",
    "spread_ratio": "total top-k variance, current / reference",
    "reconstruction_error": "Wasserstein-1 of the residual norm outside the top-k subspace,"
    " in reference residual stds",
}


@dataclass(frozen=True, slots=True)
class ReferenceParams:
    """The options a reference was fitted with (stored in the saved file)."""

    seed: int
    fit_fraction: float
    n_components: int
    n_bins: int
    smoothing: float
    max_rows: int


@dataclass(frozen=True, slots=True)
class _Prepared:
    """The current window and the reference test rows in every representation the metrics use."""

    pooled: np.ndarray
    scores: np.ndarray
    residuals: np.ndarray
    pc1_bins: np.ndarray


class Reference:
    """A reference window, fitted once and frozen; compares current windows against it.

    Build it with :meth:`Reference.fit` or :meth:`Reference.load`, not with the constructor.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> week0 = rng.normal(size=(400, 16))
    >>> ref = Reference.fit(week0, seed=0)
    >>> ref.compare(rng.normal(size=(300, 16)), n_permutations=99).drifted
    False
    >>> ref.compare(rng.normal(size=(300, 16)) + 0.5, n_permutations=99).drifted
    True
    """

    def __init__(
        self,
        *,
        params: ReferenceParams,
        projection: FrozenPCA,
        bandwidth: float,
        pc1_edges: np.ndarray,
        residual_scale: float,
        sample: np.ndarray,
        n_fit: int,
        n_total: int,
    ) -> None:
        self.params = params
        self.projection = projection
        self.bandwidth = float(bandwidth)
        self.pc1_edges = np.asarray(pc1_edges, dtype=np.float64)
        self.residual_scale = float(residual_scale)
        self._sample = np.ascontiguousarray(sample, dtype=np.float32)
        self._sample.setflags(write=False)
        self.n_fit = int(n_fit)
        self.n_total = int(n_total)
        self.reference_id = self._digest()

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        embeddings: npt.ArrayLike,
        *,
        seed: int = 0,
        fit_fraction: float = 0.5,
        n_components: int = 10,
        n_bins: int = 20,
        smoothing: float = 0.5,
        max_rows: int = 2000,
        align_to: Reference | None = None,
    ) -> Reference:
        """Fit and freeze a reference on the reference window ``embeddings`` (n, d).

        Parameters
        ----------
        embeddings : array-like (n, d)
            The reference window; at least 20 rows.
        seed : int
            Seeds the fit/test split and every random choice of the fit.
        fit_fraction : float in (0, 1)
            Share of rows used to fit the PCA, bandwidth and bins; the rest are the test rows
            every comparison uses.
        n_components : int
            Top-k PCA components for the projection metrics.
        n_bins : int
            Number of PC1 histogram bins (equal-mass on the fit rows) for ``kl_pc1``/``js_pc1``.
        smoothing : float
            Additive count per histogram bin.
        max_rows : int
            Most rows per side in one comparison (the exact metrics cost O(N²) memory);
            larger windows are subsampled without replacement, seeded.
        align_to : Reference, optional
            The previous reference when refitting: its PCA orientation is kept, so PC1 does
            not flip from one reference to the next.
        """
        rng = check_rng(seed)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise InvalidParameterError(f"The 'seed' parameter must be an int. Got {seed!r}.")
        check_probability(fit_fraction, name="fit_fraction")
        check_int(n_components, name="n_components", low=1)
        check_int(n_bins, name="n_bins", low=2)
        check_int(max_rows, name="max_rows", low=10)
        if not (isinstance(smoothing, int | float) and smoothing > 0):
            raise InvalidParameterError(
                f"The 'smoothing' parameter must be a positive float. Got {smoothing!r}."
            )
        x = as_embeddings(embeddings, name="embeddings", min_rows=20)
        n = x.shape[0]
        n_fit = int(round(fit_fraction * n))
        if n_fit < 10 or n - n_fit < 10:
            raise InsufficientDataError(
                f"fit_fraction={fit_fraction} splits {n} rows into {n_fit} fit and {n - n_fit}"
                " test rows; each part needs at least 10. Use more rows or a fraction nearer 0.5."
            )
        order = rng.permutation(n)
        fit_rows = x[np.sort(order[:n_fit])]
        test_rows = x[np.sort(order[n_fit:])]
        if test_rows.shape[0] > max_rows:
            test_rows = test_rows[np.sort(rng.choice(test_rows.shape[0], max_rows, replace=False))]

        projection = FrozenPCA(n_components=n_components).fit(
            fit_rows, align_to=None if align_to is None else align_to.projection
        )
        bandwidth = median_bandwidth(fit_rows, seed=rng)
        pc1_fit = projection.standardize(fit_rows)[:, 0]
        edges = np.quantile(pc1_fit, np.linspace(0, 1, n_bins + 1)[1:-1])
        residual_scale = float(np.std(projection.residual_norm(fit_rows), ddof=1))
        params = ReferenceParams(
            seed=seed,
            fit_fraction=float(fit_fraction),
            n_components=n_components,
            n_bins=n_bins,
            smoothing=float(smoothing),
            max_rows=max_rows,
        )
        return cls(
            params=params,
            projection=projection,
            bandwidth=bandwidth,
            pc1_edges=edges,
            residual_scale=max(residual_scale, np.finfo(np.float64).tiny),
            sample=test_rows,
            n_fit=n_fit,
            n_total=n,
        )

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self.projection.dim

    @property
    def sample(self) -> np.ndarray:
        """The held-out reference test rows (read-only float32 array)."""
        return self._sample

    def __repr__(self) -> str:
        return (
            f"Reference(id={self.reference_id!r}, d={self.dim}, n_fit={self.n_fit},"
            f" n_test={self._sample.shape[0]}, k={self.projection.n_components_})"
        )

    # ------------------------------------------------------------------ comparing
    def compare(
        self,
        current: npt.ArrayLike,
        *,
        alpha: float = 0.05,
        n_permutations: int = 500,
        seed: int | np.random.Generator | None = 0,
        metrics: Sequence[str] | None = None,
    ) -> DriftResult:
        """Compare a current window with the reference; p-values by permutation.

        Parameters
        ----------
        current : array-like (m, d)
            The current window; at least 2 rows (unbiased MMD² and variances need two).
        alpha : float in (0, 1)
            Level of every decision, per metric and combined.
        n_permutations : int
            Random splits of the pooled rows; p-values are multiples of 1/(n_permutations + 1).
        seed : int, Generator or None
            Seeds the permutations and any subsampling of windows above ``max_rows``.
        metrics : sequence of str, optional
            Subset of ``METRICS`` to compute (default: all). The combined decision is over
            the metrics computed.
        """
        t0 = time.perf_counter()
        alpha = check_probability(alpha, name="alpha")
        check_int(n_permutations, name="n_permutations", low=19)
        names = self._metric_names(metrics)
        rng = check_rng(seed)
        cur = as_embeddings(current, name="current", min_rows=2, dim=self.dim)
        if cur.shape[0] > self.params.max_rows:
            rows = np.sort(rng.choice(cur.shape[0], self.params.max_rows, replace=False))
            cur = cur[rows]
        ref = self._sample
        prepared = self._prepare(cur)
        t1 = time.perf_counter()
        stats = {name: _BUILDERS[name](self, prepared) for name in names}
        t2 = time.perf_counter()
        masks = permutation_masks(ref.shape[0], cur.shape[0], n_permutations, rng)
        values = {name: stat.values(masks) for name, stat in stats.items()}
        scores = np.column_stack([stats[n].test_statistic(values[n]) for n in names])
        outcome = combine_min_p(scores, alpha=alpha)
        t3 = time.perf_counter()
        results: dict[str, MetricResult] = {}
        for j, name in enumerate(names):
            observed = float(values[name][0])
            p = float(outcome.p_values[j])
            critical = float(outcome.critical_values[j])
            results[name] = MetricResult(
                value=observed,
                p_value=p,
                threshold=float(np.exp(critical)) if name == "spread_ratio" else critical,
                effect_size=_effect_size(name, observed, stats[name], masks[:1]),
                drifted=p <= alpha,
            )
        return DriftResult(
            drifted=outcome.combined_p_value <= alpha,
            p_value=outcome.combined_p_value,
            alpha=alpha,
            metrics=results,
            n_reference=int(ref.shape[0]),
            n_current=int(cur.shape[0]),
            reference_id=self.reference_id,
            method="permutation",
            n_permutations=n_permutations,
            timings={
                "project": t1 - t0,
                "prepare": t2 - t1,
                "permutations": t3 - t2,
                "total": time.perf_counter() - t0,
            },
        )

    def _metric_names(self, metrics: Sequence[str] | None) -> list[str]:
        if metrics is None:
            return list(METRICS)
        if isinstance(metrics, str) or not metrics:
            raise InvalidParameterError(
                f"The 'metrics' parameter must be a non-empty list of names from"
                f" {{{', '.join(METRICS)}}}. Got {metrics!r}."
            )
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise InvalidParameterError(
                f"Unknown metric(s) {unknown}; 'metrics' must be names from"
                f" {{{', '.join(METRICS)}}}."
            )
        return list(dict.fromkeys(metrics))

    def _prepare(self, current: np.ndarray) -> _Prepared:
        pooled = np.vstack([self._sample, current])
        scores = self.projection.standardize(pooled)
        residuals = self.projection.residual_norm(pooled) / self.residual_scale
        bins = np.searchsorted(self.pc1_edges, scores[:, 0], side="right")
        return _Prepared(pooled=pooled, scores=scores, residuals=residuals, pc1_bins=bins)

    # ------------------------------------------------------------------ persistence
    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            **self.projection.to_arrays(),
            "pc1_edges": self.pc1_edges,
            "sample": self._sample,
        }

    def _metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "params": asdict(self.params),
            "bandwidth": self.bandwidth,
            "residual_scale": self.residual_scale,
            "n_fit": self.n_fit,
            "n_total": self.n_total,
        }

    def _digest(self) -> str:
        h = hashlib.sha256(json.dumps(self._metadata(), sort_keys=True).encode())
        for key, arr in sorted(self._arrays().items()):
            h.update(key.encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the reference to ``path`` (an ``.npz`` archive with JSON metadata; no pickle).

        The file is written to a temporary name and renamed, so a crash never leaves half a
        reference behind.
        """
        target = Path(path)
        meta = {**self._metadata(), "reference_id": self.reference_id}
        buffer = io.BytesIO()
        arrays: dict[str, Any] = {"metadata": np.array(json.dumps(meta)), **self._arrays()}
        np.savez_compressed(buffer, **arrays)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(buffer.getvalue())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Reference:
        """Read a reference written by :meth:`save` (never unpickles anything)."""
        source = Path(path)
        try:
            with np.load(source, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except FileNotFoundError:
            raise ReferenceFormatError(
                f"No reference file at {str(source)!r}. Build one with"
                " 'embdrift reference build FILE -o REF'."
            ) from None
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise ReferenceFormatError(
                f"{str(source)!r} is not an embdrift reference (.npz) file: {exc}."
            ) from None
        try:
            meta = json.loads(str(arrays.pop("metadata")))
        except (KeyError, json.JSONDecodeError):
            raise ReferenceFormatError(
                f"{str(source)!r} has no embdrift metadata; it is not an embdrift reference."
            ) from None
        if meta.get("format") != FORMAT_NAME:
            raise ReferenceFormatError(
                f"{str(source)!r} has format {meta.get('format')!r}, expected {FORMAT_NAME!r}."
            )
        if meta.get("version") != FORMAT_VERSION:
            raise ReferenceFormatError(
                f"{str(source)!r} is reference format version {meta.get('version')!r}; this"
                f" embdrift reads version {FORMAT_VERSION}. Rebuild the reference."
            )
        try:
            ref = cls(
                params=ReferenceParams(**meta["params"]),
                projection=FrozenPCA.from_arrays(arrays),
                bandwidth=float(meta["bandwidth"]),
                pc1_edges=arrays["pc1_edges"],
                residual_scale=float(meta["residual_scale"]),
                sample=arrays["sample"],
                n_fit=int(meta["n_fit"]),
                n_total=int(meta["n_total"]),
            )
        except (KeyError, TypeError) as exc:
            raise ReferenceFormatError(
                f"{str(source)!r} is missing reference field {exc}; the file is incomplete."
            ) from None
        if meta.get("reference_id") != ref.reference_id:
            raise ReferenceFormatError(
                f"{str(source)!r} is corrupt: its content does not match its reference_id"
                f" {meta.get('reference_id')!r}."
            )
        return ref


# ---------------------------------------------------------------------- metric wiring
_Builder = Callable[[Reference, _Prepared], TwoSampleStatistic]

_BUILDERS: dict[str, _Builder] = {
    "mmd": lambda ref, p: KernelMMD(p.pooled, bandwidth=ref.bandwidth),
    "energy": lambda ref, p: EnergyStatistic(p.pooled),
    "wasserstein_pc1": lambda ref, p: Wasserstein1D(p.scores[:, 0]),
    "sliced_wasserstein": lambda ref, p: Wasserstein1D(p.scores),
    "kl_pc1": lambda ref, p: HistogramDivergence(
        p.pc1_bins, n_bins=ref.params.n_bins, kind="kl", smoothing=ref.params.smoothing
    ),
    "js_pc1": lambda ref, p: HistogramDivergence(
        p.pc1_bins, n_bins=ref.params.n_bins, kind="js", smoothing=ref.params.smoothing
    ),
    "mean_shift": lambda ref, p: MeanShift(p.scores),
    "spread_ratio": lambda ref, p: SpreadRatio(p.scores),
    "reconstruction_error": lambda ref, p: Wasserstein1D(p.residuals),
}


def _effect_size(name: str, value: float, stat: TwoSampleStatistic, observed: np.ndarray) -> float:
    """A scale-free size per metric.

    mmd: the RKHS distance sqrt(max(MMD², 0)) (at most sqrt 2); energy: the energy coefficient
    H = E / (2E‖X−Y‖) in [0, 1]; js_pc1: JS / ln 2 in [0, 1]; spread_ratio: ratio − 1 (relative
    change of spread); the Wasserstein, KL and mean-shift values are already in reference
    standard deviations or nats and are their own effect sizes.
    """
    if name == "mmd":
        return float(np.sqrt(max(value, 0.0)))
    if name == "energy" and isinstance(stat, EnergyStatistic):
        between = float(stat.parts(observed)[1][0])
        return value / between if between > 0 else 0.0
    if name == "js_pc1":
        return value / float(np.log(2.0))
    if name == "spread_ratio":
        return value - 1.0
    return value
