"""What readers see of a stream: :class:`StreamSnapshot`, published after every change.

The registry builds a new, immutable :class:`StreamSnapshot` of a stream under the stream's
lock at the end of every change (an accepted batch or outcome post, a closed window, an
explanation attached, a recovery) and publishes it by assigning one attribute, which is atomic.
Readers (``/metrics``, ``GET /v1/streams``, ``GET /v1/streams/{s}/drift``, the live page) take
the published object and never the lock, so a scrape that lands while a window is being tested
answers at once with the values of the last completed change instead of waiting for the test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embdrift.stream.monitor import WindowResult

__all__ = ["StreamSnapshot", "WindowSummary"]


@dataclass(frozen=True, slots=True)
class WindowSummary:
    """One closed window as the service reports it.

    Attributes
    ----------
    window : WindowResult
        The monitor's result (bounds, DriftResult, alert, example ids).
    closed_at : float
        Unix time the request that closed the window was received.
    outcome_rates : Mapping[str, float]
        Mean of each outcome over the values received since the previous window closed.
    new_cluster_share : float or None
        Share of the window's reservoir rows in new regions (:func:`embdrift.explain.explain`),
        None when not computed (yet): too few rows, ``explain`` off, still running, or the
        window closed before a crash and its explanation had not finished.
    """

    window: WindowResult
    closed_at: float
    outcome_rates: Mapping[str, float] = field(default_factory=dict)
    new_cluster_share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.window.to_dict(),
            "closed_at": self.closed_at,
            "outcome_rates": dict(self.outcome_rates),
            "new_cluster_share": self.new_cluster_share,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowSummary:
        return cls(
            window=WindowResult.from_dict(dict(data["window"])),
            closed_at=float(data["closed_at"]),
            outcome_rates={k: float(v) for k, v in data["outcome_rates"].items()},
            new_cluster_share=data["new_cluster_share"],
        )


@dataclass(frozen=True, slots=True)
class StreamSnapshot:
    """A consistent copy of one stream's state for readers (see the module docstring)."""

    name: str
    reference_id: str
    mode: str
    count: int
    batches: int
    alert: bool
    windows: int
    drift_windows: int
    last_ingest: float | None
    latest: WindowSummary | None
    history: tuple[WindowSummary, ...]
    outcome_events: Mapping[str, int]
    explanation: Mapping[str, Any] | None
    points: np.ndarray
    point_ids: tuple[str, ...]
    point_labels: tuple[str, ...]
    reference_points: np.ndarray

    def to_dict(self, *, history: bool = True, points: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "stream": self.name,
            "reference_id": self.reference_id,
            "mode": self.mode,
            "count": self.count,
            "batches": self.batches,
            "alert": self.alert,
            "windows": self.windows,
            "drift_windows": self.drift_windows,
            "last_ingest": self.last_ingest,
            "latest": None if self.latest is None else self.latest.to_dict(),
            "outcome_events": dict(self.outcome_events),
        }
        if history:
            out["history"] = [w.to_dict() for w in self.history]
        if points:
            out["explanation"] = self.explanation
            out["points"] = self.points.round(4).tolist()
            out["point_ids"] = list(self.point_ids)
            out["point_labels"] = list(self.point_labels)
            out["reference_points"] = self.reference_points.round(4).tolist()
        return out
