"""Synthetic drift and outcome series with a planted truth.

Used by the tests (planted-truth recovery and false-alarm rates over many seeded runs, all runs
generated at once), by ``embdrift outcomes example`` and by the docs. Each outcome is

``y_t = base + amplitude * sin(2 pi t / day) + e_t + effect * S_{t - lag}``,

with AR(1) noise ``e_t = phi e_{t-1} + sd sqrt(1 - phi^2) z_t`` (stationary, marginal sd
``sd``) and ``S`` the planted spike indicator of the drift series. Drift is a noisy baseline
with spike episodes of a few buckets starting at random times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from embdrift._validation import check_int, check_rng
from embdrift.outcomes import Series

__all__ = [
    "DEFAULT_OUTCOMES",
    "OutcomeSpec",
    "SimulatedOutcomes",
    "simulate_items",
    "simulate_outcomes",
]

#: Monday 2026-01-05 00:00 UTC.
_START = 1767571200.0


@dataclass(frozen=True, slots=True)
class OutcomeSpec:
    """One planted outcome: level, daily seasonality, AR(1) noise and the spike effect."""

    name: str
    base: float
    amplitude: float
    noise_sd: float
    phi: float
    effect: float = 0.0
    lag: int = 0


#: Two affected outcomes (success drops 2 h after a spike, no-answer rises 1 h after) and
#: two unaffected ones.
DEFAULT_OUTCOMES: tuple[OutcomeSpec, ...] = (
    OutcomeSpec("success_rate", 0.80, 0.03, 0.012, 0.7, effect=-0.03, lag=2),
    OutcomeSpec("no_answer_rate", 0.07, 0.01, 0.008, 0.7, effect=0.04, lag=1),
    OutcomeSpec("click_through", 0.25, 0.03, 0.012, 0.7),
    OutcomeSpec("escalation_rate", 0.03, 0.006, 0.004, 0.7),
)


@dataclass(frozen=True, slots=True)
class SimulatedOutcomes:
    """``n_runs`` independent draws on a shared time grid.

    Attributes
    ----------
    times : numpy.ndarray
        (T,) Unix seconds.
    drift : numpy.ndarray
        (R, T) drift values.
    spikes : numpy.ndarray
        (R, T) planted spike indicator.
    outcomes : dict of str -> numpy.ndarray
        (R, T) per outcome.
    specs : tuple of OutcomeSpec
    """

    times: np.ndarray
    drift: np.ndarray
    spikes: np.ndarray
    outcomes: dict[str, np.ndarray] = field(repr=False)
    specs: tuple[OutcomeSpec, ...] = ()

    def run(self, i: int) -> tuple[Series, list[Series]]:
        """Run ``i`` as a drift :class:`~embdrift.outcomes.Series` and outcome series."""
        drift = Series.from_arrays("drift", self.times, self.drift[i])
        return drift, [Series.from_arrays(n, self.times, v[i]) for n, v in self.outcomes.items()]


def simulate_outcomes(
    n_runs: int = 1,
    *,
    n_days: int = 14,
    bucket_seconds: float = 3600.0,
    specs: Sequence[OutcomeSpec] = DEFAULT_OUTCOMES,
    spike_rate: float = 0.012,
    spike_length: tuple[int, int] = (2, 5),
    drift_base: float = 0.02,
    drift_noise: float = 0.004,
    spike_height: float = 0.05,
    seed: int | np.random.Generator | None = 0,
) -> SimulatedOutcomes:
    """Draw drift and outcome series with planted spike effects.

    Parameters
    ----------
    n_runs : int
        Independent runs, drawn at once (vectorised over runs).
    n_days : int
        Length of each series in days.
    bucket_seconds : float
        Sampling step.
    specs : sequence of OutcomeSpec
        Outcomes to draw.
    spike_rate : float
        Probability that a spike episode starts in a bucket.
    spike_length : (int, int)
        Inclusive range of episode lengths in buckets.
    drift_base, drift_noise, spike_height : float
        Drift level, its (white Gaussian) noise sd and the rise during a spike.
    seed : int, Generator or None
        Randomness.
    """
    n_runs = check_int(n_runs, name="n_runs", low=1)
    n_days = check_int(n_days, name="n_days", low=1)
    rng = check_rng(seed)
    t_len = int(round(n_days * 86400.0 / bucket_seconds))
    times = _START + bucket_seconds * np.arange(t_len)
    starts = rng.random((n_runs, t_len)) < spike_rate
    lengths = rng.integers(spike_length[0], spike_length[1] + 1, size=(n_runs, t_len))
    spikes = np.zeros((n_runs, t_len), dtype=bool)
    for r, s in zip(*np.nonzero(starts), strict=True):
        spikes[r, s : s + lengths[r, s]] = True
    drift = drift_base + drift_noise * rng.standard_normal((n_runs, t_len))
    drift = drift + spike_height * spikes
    season = np.sin(2 * np.pi * (times - _START) / 86400.0)
    outcomes: dict[str, np.ndarray] = {}
    for spec in specs:
        z = rng.standard_normal((n_runs, t_len))
        noise = np.empty((n_runs, t_len))
        noise[:, 0] = spec.noise_sd * z[:, 0]
        innov = spec.noise_sd * np.sqrt(1.0 - spec.phi**2)
        for t in range(1, t_len):
            noise[:, t] = spec.phi * noise[:, t - 1] + innov * z[:, t]
        shifted = np.zeros((n_runs, t_len))
        shifted[:, spec.lag :] = spikes[:, : t_len - spec.lag]
        outcomes[spec.name] = (
            spec.base + spec.amplitude * season[None, :] + noise + spec.effect * shifted
        )
    return SimulatedOutcomes(times, drift, spikes, outcomes, tuple(specs))


def simulate_items(
    *,
    n_reference: int = 4000,
    n_current: int = 4000,
    new_share: float = 0.05,
    base_rate: float = 0.07,
    new_rate: float = 0.31,
    new_label: str = "3",
    seed: int | np.random.Generator | None = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-item 0/1 outcomes with one new region whose rate is raised.

    Returns ``(regions, current_outcome, reference_outcome)``: current items belong to region
    ``"known"`` or, with probability ``new_share``, to region ``new_label``; outcomes are
    Bernoulli(``base_rate``) except Bernoulli(``new_rate``) in the new region.
    """
    rng = check_rng(seed)
    is_new = rng.random(n_current) < new_share
    regions = np.where(is_new, new_label, "known")
    current = (rng.random(n_current) < np.where(is_new, new_rate, base_rate)).astype(np.int64)
    reference = (rng.random(n_reference) < base_rate).astype(np.int64)
    return regions, current, reference
