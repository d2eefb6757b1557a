"""Result types: frozen dataclasses that serialise to JSON and back."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embdrift.explain import Explanation

__all__ = ["DriftResult", "MetricResult"]


def _finite_or_none(value: float | None) -> float | None:
    if value is None or math.isnan(value):
        return None
    if math.isinf(value):
        return None
    return float(value)


def _float_or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


@dataclass(frozen=True, slots=True)
class MetricResult:
    """One metric's verdict.

    Attributes
    ----------
    value : float
        The statistic in its own units (see ``embdrift.reference.METRICS``).
    p_value : float or None
        Calibrated p-value under "no drift"; None where the metric is not tested.
    threshold : float or None
        The value at which this metric would call drift at the result's alpha (the critical
        value of its calibrated null); for ``spread_ratio`` the factor t such that ratios
        outside [1/t, t] are drifted.
    effect_size : float
        A scale-free size of the change, comparable across window sizes.
    drifted : bool
        ``p_value <= alpha``.
    """

    value: float
    p_value: float | None
    threshold: float | None
    effect_size: float
    drifted: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": _finite_or_none(self.value),
            "p_value": _finite_or_none(self.p_value),
            "threshold": _finite_or_none(self.threshold),
            "effect_size": _finite_or_none(self.effect_size),
            "drifted": bool(self.drifted),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricResult:
        return cls(
            value=_float_or_nan(data["value"]),
            p_value=None if data.get("p_value") is None else float(data["p_value"]),
            threshold=None if data.get("threshold") is None else float(data["threshold"]),
            effect_size=_float_or_nan(data["effect_size"]),
            drifted=bool(data["drifted"]),
        )


@dataclass(frozen=True, slots=True)
class DriftResult:
    """The outcome of comparing a current window with a frozen reference.

    Attributes
    ----------
    drifted : bool
        The combined decision at level ``alpha`` over ``decision_metrics``, so the
        family-wise false-alarm rate of the verdict stays at alpha: a min-p within the kernel
        statistics and within the projection metrics, a weighted Bonferroni across the two
        in a row-level permutation check; one min-p over them all with groups or a stored
        null, where every metric shares the permutations (``Reference.compare``); a min-p for
        the stream's sketches.
    p_value : float
        The combined p-value.
    alpha : float
        The level of every decision in this result.
    metrics : Mapping[str, MetricResult]
        Per-metric results, keyed by metric name.
    n_reference, n_current : int
        Rows tested on each side (the reference's held-out test rows, the current window);
        ``mmd`` and ``energy`` in a permutation check also count the reference's anchors
        (``embdrift.reference.KERNEL_METRICS``).
    reference_id : str
        The identifier of the frozen reference used.
    method : str
        How p-values were obtained (``"permutation"``).
    decision_metrics : tuple of str
        The metrics the combined decision is over.
    bandwidth : float or None
        The RBF bandwidth ``mmd`` used: in a row-level permutation check the median heuristic
        on the pooled rows, in a group permutation or with a stored null the reference's
        fitted one; None when ``mmd`` was not computed by ``Reference.compare``. ``mmd``
        values (and their effect sizes) are comparable across checks at equal bandwidths;
        for a long trend ``energy`` has no bandwidth.
    path : str
        ``"exact"`` (kernel/distance matrices on all rows) or ``"large_n"`` (random
        features, subsampled energy; see ``Reference.compare``).
    n_permutations : int
        Number of random splits behind the p-values.
    timings : Mapping[str, float]
        Wall time in seconds of the stages of the check.
    explanation : Explanation or None
        What drifted (``embdrift.explain.explain``), when it was asked for; ``to_dict`` has an
        ``"explanation"`` key only then.
    """

    drifted: bool
    p_value: float
    alpha: float
    metrics: Mapping[str, MetricResult]
    n_reference: int
    n_current: int
    reference_id: str
    method: str = "permutation"
    path: str = "exact"
    decision_metrics: tuple[str, ...] = ()
    n_permutations: int = 0
    bandwidth: float | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    explanation: Explanation | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``embdrift check --json`` prints exactly this."""
        out: dict[str, Any] = {
            "drifted": bool(self.drifted),
            "p_value": float(self.p_value),
            "alpha": float(self.alpha),
            "metrics": {name: m.to_dict() for name, m in self.metrics.items()},
            "n_reference": int(self.n_reference),
            "n_current": int(self.n_current),
            "reference_id": self.reference_id,
            "method": self.method,
            "path": self.path,
            "decision_metrics": list(self.decision_metrics),
            "n_permutations": int(self.n_permutations),
            "bandwidth": None if self.bandwidth is None else float(self.bandwidth),
            "timings": {k: float(v) for k, v in self.timings.items()},
        }
        if self.explanation is not None:
            out["explanation"] = self.explanation.to_dict()
        return out

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftResult:
        explanation = None
        if data.get("explanation") is not None:
            from embdrift.explain import Explanation  # services import results, not the reverse

            explanation = Explanation.from_dict(data["explanation"])
        return cls(
            drifted=bool(data["drifted"]),
            p_value=float(data["p_value"]),
            alpha=float(data["alpha"]),
            metrics={k: MetricResult.from_dict(v) for k, v in data["metrics"].items()},
            n_reference=int(data["n_reference"]),
            n_current=int(data["n_current"]),
            reference_id=str(data["reference_id"]),
            method=str(data.get("method", "permutation")),
            path=str(data.get("path", "exact")),
            decision_metrics=tuple(data.get("decision_metrics", ())),
            n_permutations=int(data.get("n_permutations", 0)),
            bandwidth=None if data.get("bandwidth") is None else float(data["bandwidth"]),
            timings=dict(data.get("timings", {})),
            explanation=explanation,
        )

    @classmethod
    def from_json(cls, text: str) -> DriftResult:
        return cls.from_dict(json.loads(text))
