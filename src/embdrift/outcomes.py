"""Does drift matter? Pair a drift series with product outcomes.

Two questions, two entry points:

* :func:`analyze` — *when drift spikes, which outcome series degrade, by how much, with what
  confidence and at what lag?* It aligns a drift series and several outcome series (retrieval
  success, click-through, no-answer rate, ...) on one time grid, finds drift spikes robustly,
  and tests each outcome with a block permutation of the spike episodes whose lag search runs
  inside every permutation (``embdrift.stats.association``), adjusted across outcomes. It
  returns a frozen :class:`OutcomesResult` whose ``ranking`` lists the outcomes from most to
  least degraded.
* :func:`region_rates` — *item-level outcomes*: given a region label per current item (e.g. a
  new cluster) and a per-item outcome (answered/clicked/escalated as 0/1, or numbers), report
  each region's rate with a Wilson interval against the reference rate.

Each outcome has a *bad direction*: ``"down"`` when lower values are worse (success rate,
click-through, satisfaction), ``"up"`` when higher values are worse (no-answer rate, escalation
rate). :func:`bad_direction` guesses it from the name; anything else must be declared.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from embdrift._validation import check_choice, check_int, check_probability, check_rng
from embdrift.errors import (
    InsufficientDataError,
    InvalidParameterError,
    InvalidSeriesError,
    SeriesAlignmentError,
    TimestampOrderError,
    UnknownDirectionError,
)
from embdrift.stats.association import (
    SpikePatterns,
    episode_permutations,
    holm,
    lag_effect,
    lag_permutation_test,
    mean_interval,
    newcombe_interval,
    robust_spikes,
    welch_interval,
    wilson_interval,
)

__all__ = [
    "DIRECTION_RULES",
    "OutcomeEffect",
    "OutcomesResult",
    "RegionRate",
    "RegionReport",
    "Series",
    "SeriesCoverage",
    "analyze",
    "bad_direction",
    "parse_duration",
    "region_rates",
    "to_unix_seconds",
]

#: Name fragments that fix an outcome's bad direction, checked in this order (so that
#: ``no_answer_rate`` is "up" before ``answer`` could match anything). Tokens are the parts of
#: the lower-cased name split at non-alphanumerics.
DIRECTION_RULES: tuple[tuple[str, str], ...] = (
    ("no_answer", "up"),
    ("noanswer", "up"),
    ("unanswered", "up"),
    ("escalat", "up"),
    ("error", "up"),
    ("fail", "up"),
    ("abandon", "up"),
    ("success", "down"),
    ("click", "down"),
    ("token:ctr", "down"),
    ("satisf", "down"),
    ("token:csat", "down"),
)

_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: str | float | int, *, name: str = "bucket") -> float:
    """Seconds in a duration: a positive number of seconds or a string like ``"15min"``,
    ``"1h"``, ``"1d"`` (units s, min/m, h, d, w)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*", value.lower())
        if match is None or match.group(2) not in _UNITS:
            raise InvalidParameterError(
                f"The {name!r} parameter must be a duration such as '30s', '15min', '1h', '1d'"
                f" or a number of seconds. Got {value!r} instead."
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise InvalidParameterError(
            f"The {name!r} parameter must be a duration string or seconds. Got {value!r} instead."
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidParameterError(
            f"The {name!r} parameter must be a positive duration. Got {value!r} instead."
        )
    return seconds


def bad_direction(name: str, overrides: Mapping[str, str] | None = None) -> str:
    """The bad direction (``"up"`` or ``"down"``) of an outcome named ``name``.

    ``overrides`` (name -> direction) wins; otherwise :data:`DIRECTION_RULES` decide.
    Raises :class:`~embdrift.errors.UnknownDirectionError` when neither does.
    """
    if overrides and name in overrides:
        direction = str(overrides[name]).lower()
        if direction not in ("up", "down"):
            raise UnknownDirectionError(
                f"The direction of outcome {name!r} must be 'up' (higher is worse) or 'down'"
                f" (lower is worse). Got {overrides[name]!r} instead."
            )
        return direction
    lowered = name.lower()
    tokens = set(re.split(r"[^a-z0-9]+", lowered))
    for pattern, direction in DIRECTION_RULES:
        if pattern.startswith("token:"):
            if pattern[6:] in tokens:
                return direction
        elif pattern in lowered:
            return direction
    raise UnknownDirectionError(
        f"Cannot tell whether a rise or a fall of outcome {name!r} is bad. Declare it:"
        f" directions={{{name!r}: 'up'}} for higher-is-worse or 'down' for lower-is-worse"
        f" (CLI: --direction {name}=up)."
    )


def to_unix_seconds(time: Any, *, name: str = "time") -> np.ndarray:
    """Unix seconds (float64) from datetime64, datetimes, ISO strings or numbers."""
    arr = np.asarray(time)
    if arr.ndim != 1:
        raise InvalidSeriesError(f"{name} time must be 1-D; got shape {arr.shape}.")
    if arr.dtype.kind == "M":
        missing = np.flatnonzero(np.isnat(arr))
        if missing.size:
            raise InvalidSeriesError(
                f"{name} time at row {int(missing[0])} is missing (NaT; {missing.size} row(s) in"
                " all). Drop the points without a timestamp."
            )
        return arr.astype("datetime64[ns]").astype(np.int64) / 1e9
    if arr.dtype.kind in "iuf":
        return arr.astype(np.float64)
    if arr.dtype.kind in "OUS":
        out = np.empty(arr.size)
        for i, item in enumerate(arr.tolist()):
            if isinstance(item, datetime):
                aware = item if item.tzinfo is not None else item.replace(tzinfo=UTC)
                out[i] = aware.timestamp()
            elif isinstance(item, numbers.Real) and not isinstance(item, bool):
                out[i] = float(item)
            else:
                try:
                    parsed = datetime.fromisoformat(str(item).strip())
                except ValueError:
                    raise InvalidSeriesError(
                        f"{name} time at row {i} is not a timestamp: {item!r}. Use ISO 8601"
                        " ('2026-01-05T10:00:00Z') or Unix seconds."
                    ) from None
                aware = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
                out[i] = aware.timestamp()
        return out
    raise InvalidSeriesError(
        f"{name} time must hold timestamps or Unix seconds; got dtype {arr.dtype}."
    )


@dataclass(frozen=True, slots=True)
class Series:
    """One metric over time: strictly increasing Unix-second times and finite values.

    Build it with :meth:`from_arrays`, which validates. ``count`` (optional) weights each
    point when points are merged into buckets (e.g. the number of requests behind a rate);
    ``drifted`` (optional, drift series only) is the calibrated drift decision per point.
    """

    name: str
    time: np.ndarray
    value: np.ndarray
    count: np.ndarray | None = None
    drifted: np.ndarray | None = None

    @classmethod
    def from_arrays(
        cls,
        name: str,
        time: Any,
        value: npt.ArrayLike,
        *,
        count: npt.ArrayLike | None = None,
        drifted: npt.ArrayLike | None = None,
    ) -> Series:
        """Validate and build a series (never changes the inputs)."""
        label = f"series {name!r}"
        t = to_unix_seconds(time, name=label)
        v = np.asarray(value)
        if v.dtype.kind not in "iufb":
            raise InvalidSeriesError(f"{label} values must be numbers; got dtype {v.dtype}.")
        v = v.astype(np.float64)
        if v.ndim != 1 or v.size != t.size:
            raise InvalidSeriesError(
                f"{label} needs one value per timestamp; got {t.size} times and values of shape"
                f" {v.shape}."
            )
        if t.size == 0:
            raise InvalidSeriesError(f"{label} is empty; it needs at least one (time, value).")
        for what, arr in (("time", t), ("value", v)):
            bad = np.flatnonzero(~np.isfinite(arr))
            if bad.size:
                raise InvalidSeriesError(
                    f"{label} {what} must be finite; {bad.size} point(s) hold NaN or inf (first"
                    f" at row {int(bad[0])}). Drop those points: a missing value is a gap, which"
                    " the analysis handles."
                )
        steps = np.diff(t)
        if steps.size and not np.all(steps > 0):
            i = int(np.flatnonzero(steps <= 0)[0])
            kind = "repeats" if steps[i] == 0 else "goes back in time"
            raise TimestampOrderError(
                f"{label} time must be strictly increasing; it {kind} at row {i + 1}"
                f" ({_iso(t[i + 1])} after {_iso(t[i])}). Sort by time and merge duplicates."
            )
        c = None
        if count is not None:
            c = np.asarray(count, dtype=np.float64)
            if c.shape != v.shape or not np.all(np.isfinite(c)) or np.any(c < 0):
                raise InvalidSeriesError(
                    f"{label} count must be finite, non-negative and one per point; got"
                    f" shape {c.shape}."
                )
        d = None
        if drifted is not None:
            d = np.asarray(drifted).astype(bool)
            if d.shape != v.shape:
                raise InvalidSeriesError(f"{label} drifted must have one flag per point.")
        return cls(name=name, time=t, value=v, count=c, drifted=d)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(float(seconds), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _as_series(obj: Any, name: str) -> Series:
    if isinstance(obj, Series):
        return obj
    if isinstance(obj, Mapping):
        try:
            return Series.from_arrays(
                name, obj["time"], obj["value"], count=obj.get("count"), drifted=obj.get("drifted")
            )
        except KeyError:
            raise InvalidSeriesError(
                f"series {name!r} must have 'time' and 'value'; got keys {sorted(obj)}."
            ) from None
    if isinstance(obj, tuple) and len(obj) in (2, 3):
        return Series.from_arrays(name, obj[0], obj[1], count=obj[2] if len(obj) == 3 else None)
    raise InvalidSeriesError(
        f"series {name!r} must be a Series, a (time, value[, count]) tuple or a mapping with"
        f" 'time' and 'value'; got {type(obj).__name__}."
    )


@dataclass(frozen=True, slots=True)
class SeriesCoverage:
    """How one series filled the common time grid.

    Attributes
    ----------
    name : str
    n_points : int
        Points in the series.
    n_used : int
        Points inside the grid (the drift series' span).
    buckets_filled : int
        Grid buckets holding at least one point; the others are gaps.
    coverage : float
        ``buckets_filled / n_buckets``.
    median_spacing : float or None
        Median seconds between consecutive points (None for a single point).
    points_per_bucket : float
        Median points per filled bucket (unequal sampling shows here).
    """

    name: str
    n_points: int
    n_used: int
    buckets_filled: int
    coverage: float
    median_spacing: float | None
    points_per_bucket: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n_points": self.n_points,
            "n_used": self.n_used,
            "buckets_filled": self.buckets_filled,
            "coverage": self.coverage,
            "median_spacing_seconds": self.median_spacing,
            "points_per_bucket": self.points_per_bucket,
        }


@dataclass(frozen=True, slots=True)
class OutcomeEffect:
    """How one outcome moves when drift spikes.

    Attributes
    ----------
    name, bad_direction : str
        The outcome and its bad direction (``"up"`` or ``"down"``).
    status : str
        ``"ok"``, ``"not enough data"``, ``"constant"`` or ``"no spikes"``; only ``"ok"``
        outcomes carry numbers.
    degraded : bool
        ``p_value <= alpha`` with the change in the bad direction.
    effect, ci_low, ci_high : float or None
        Change during spikes minus baseline at ``lag`` (outcome units; adjusted for the
        seasonal phase), with its confidence interval at level ``1 - alpha`` (inverted
        permutation test, conditional on the lag).
    relative_effect : float or None
        ``effect / baseline_mean``.
    standardized_effect : float or None
        The change in the bad direction in residual standard deviations (> 0 means worse).
    spike_mean, baseline_mean : float or None
        Unadjusted outcome means in spike and baseline buckets at ``lag``.
    p_value : float or None
        Family-wise adjusted p-value across outcomes (decides ``degraded``).
    p_value_raw : float or None
        This outcome's own permutation p-value (the lag search is paid for in both).
    statistic : float or None
        Observed max-over-lags t statistic (oriented: > 0 means worse during spikes).
    lag : int or None
        Buckets from a drift spike to the strongest outcome response.
    spearman : float or None
        Spearman rank correlation of drift with the (seasonally adjusted) outcome at ``lag``.
    n_spike, n_baseline : int
        Buckets on each side at ``lag``.
    message : str
        Why there are no numbers, or a short reading of them.
    """

    name: str
    bad_direction: str
    status: str
    degraded: bool = False
    effect: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    relative_effect: float | None = None
    standardized_effect: float | None = None
    spike_mean: float | None = None
    baseline_mean: float | None = None
    p_value: float | None = None
    p_value_raw: float | None = None
    statistic: float | None = None
    lag: int | None = None
    spearman: float | None = None
    n_spike: int = 0
    n_baseline: int = 0
    message: str = ""

    def to_dict(self, *, bucket_seconds: float, alpha: float) -> dict[str, Any]:
        """The JSON form: ``name``, ``degraded``, ``effect`` with its interval, ``p_value``,
        ``lag`` and the rest."""
        return {
            "name": self.name,
            "degraded": bool(self.degraded),
            "status": self.status,
            "bad_direction": self.bad_direction,
            "effect": {
                "value": _num(self.effect),
                "ci_low": _num(self.ci_low),
                "ci_high": _num(self.ci_high),
                "level": 1.0 - alpha,
                "relative": _num(self.relative_effect),
                "standardized": _num(self.standardized_effect),
                "spike_mean": _num(self.spike_mean),
                "baseline_mean": _num(self.baseline_mean),
            },
            "p_value": _num(self.p_value),
            "p_value_raw": _num(self.p_value_raw),
            "statistic": _num(self.statistic),
            "lag": self.lag,
            "lag_seconds": None if self.lag is None else self.lag * bucket_seconds,
            "spearman": _num(self.spearman),
            "n_spike": self.n_spike,
            "n_baseline": self.n_baseline,
            "message": self.message,
        }


def _num(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True, slots=True)
class OutcomesResult:
    """Result of :func:`analyze`.

    Attributes
    ----------
    ranking : tuple of OutcomeEffect
        Outcomes from most to least degraded (usable ones by adjusted p-value, then by
        standardised effect; then those without enough data).
    alpha, bucket_seconds, max_lag : float, float, int
        Settings: level, grid step, largest lag searched.
    spike_rule : str
        ``"mad"`` (median + k·MAD on the bucketed drift) or ``"decision"`` (any calibrated
        drift decision in the bucket).
    spike_threshold : float
        The drift value above which a bucket is a spike (``inf`` for a constant series; NaN
        with ``"decision"``).
    n_phases : int
        Seasonal phases adjusted for (1 = none).
    correction : str
        Multiple-testing adjustment across outcomes.
    n_permutations : int
        Permuted spike patterns behind the p-values.
    times : numpy.ndarray
        (T,) start of each bucket (Unix seconds).
    drift : numpy.ndarray
        (T,) bucketed drift, NaN in gaps.
    spikes : numpy.ndarray
        (T,) bool spike buckets.
    outcome_values : Mapping[str, numpy.ndarray]
        (T,) bucketed outcome values, NaN in gaps.
    coverage : tuple of SeriesCoverage
        Drift first, then each outcome.
    notes : tuple of str
        What the alignment and the analysis decided on the way (gaps, seasonality, ...).
    """

    ranking: tuple[OutcomeEffect, ...]
    alpha: float
    bucket_seconds: float
    max_lag: int
    spike_rule: str
    spike_threshold: float
    n_phases: int
    correction: str
    n_permutations: int
    times: np.ndarray = field(repr=False)
    drift: np.ndarray = field(repr=False)
    spikes: np.ndarray = field(repr=False)
    outcome_values: Mapping[str, np.ndarray] = field(repr=False)
    coverage: tuple[SeriesCoverage, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def degraded(self) -> tuple[str, ...]:
        """Names of the degraded outcomes, most degraded first."""
        return tuple(e.name for e in self.ranking if e.degraded)

    def effect(self, name: str) -> OutcomeEffect:
        """The :class:`OutcomeEffect` of outcome ``name``."""
        for e in self.ranking:
            if e.name == name:
                return e
        raise KeyError(f"no outcome named {name!r}; outcomes: {[e.name for e in self.ranking]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``embdrift outcomes analyze --json`` prints this)."""
        return {
            "outcomes": [
                e.to_dict(bucket_seconds=self.bucket_seconds, alpha=self.alpha)
                for e in self.ranking
            ],
            "degraded": list(self.degraded),
            "alpha": self.alpha,
            "bucket_seconds": self.bucket_seconds,
            "start": _iso(self.times[0]) if self.times.size else None,
            "n_buckets": int(self.times.size),
            "n_spikes": int(self.spikes.sum()),
            "spike_rule": self.spike_rule,
            "spike_threshold": _num(self.spike_threshold),
            "max_lag": self.max_lag,
            "n_phases": self.n_phases,
            "correction": self.correction,
            "n_permutations": self.n_permutations,
            "coverage": [c.to_dict() for c in self.coverage],
            "notes": list(self.notes),
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)


def _bucketize(
    s: Series, start: float, bucket: float, n_buckets: int, *, weighted: bool
) -> tuple[np.ndarray, np.ndarray, SeriesCoverage]:
    """Mean (count-weighted when counts are given) per bucket; NaN for empty buckets."""
    idx = np.floor((s.time - start) / bucket).astype(np.int64)
    inside = (idx >= 0) & (idx < n_buckets)
    idx_in = idx[inside]
    w = s.count[inside] if (weighted and s.count is not None) else np.ones(idx_in.size)
    sums = np.bincount(idx_in, weights=s.value[inside] * w, minlength=n_buckets)
    weights = np.bincount(idx_in, weights=w, minlength=n_buckets)
    points = np.bincount(idx_in, minlength=n_buckets)
    valid = weights > 0
    values = np.full(n_buckets, np.nan)
    values[valid] = sums[valid] / weights[valid]
    filled = int(np.count_nonzero(points))
    cov = SeriesCoverage(
        name=s.name,
        n_points=int(s.time.size),
        n_used=int(inside.sum()),
        buckets_filled=filled,
        coverage=filled / n_buckets,
        median_spacing=float(np.median(np.diff(s.time))) if s.time.size > 1 else None,
        points_per_bucket=float(np.median(points[points > 0])) if filled else 0.0,
    )
    return values, valid, cov


def analyze(
    drift: Series | Any,
    outcomes: Mapping[str, Any] | Sequence[Series],
    *,
    bucket: str | float | None = None,
    directions: Mapping[str, str] | None = None,
    alpha: float = 0.05,
    max_lag: int = 6,
    spikes: str = "mad",
    k: float = 3.0,
    season: str | float | None = "1d",
    correction: str = "minp",
    n_permutations: int = 999,
    min_buckets: int = 20,
    seed: int | np.random.Generator | None = 0,
) -> OutcomesResult:
    """Which outcomes degrade when drift spikes, by how much, how surely and at what lag.

    Parameters
    ----------
    drift : Series or (time, value) tuple or mapping
        The drift score over time (e.g. ``Store.drift_series``). With ``spikes="decision"``
        it must carry ``drifted`` flags.
    outcomes : mapping name -> series, or sequence of Series
        Outcome series (optionally with ``count`` weights).
    bucket : str, float or None
        Common grid step (``"1h"``, seconds). None takes the coarsest median sampling interval
        among the series.
    directions : mapping name -> {"up", "down"}, optional
        Bad direction per outcome; names not given are guessed by :func:`bad_direction`.
    alpha : float
        Level of the decisions and ``1 - alpha`` the interval level.
    max_lag : int
        Largest lag (buckets) searched; lags ``0..max_lag``.
    spikes : {"mad", "decision"}
        Spike rule: buckets with drift above ``median + k * 1.4826 MAD``, or buckets holding a
        point whose calibrated drift decision was positive.
    k : float
        Robust standard deviations for the ``"mad"`` rule.
    season : str, float or None
        Seasonal period removed from outcomes by one intercept per phase (default a day).
        Skipped (and noted) when the span covers fewer than three periods.
    correction : {"minp", "holm", "none"}
        Adjustment across outcomes: Westfall-Young single-step min-p over the shared permutations,
        Holm, or none.
    n_permutations : int
        Random rearrangements of the spike episodes behind the p-values and intervals.
    min_buckets : int
        Fewer aligned buckets than this make an outcome "not enough data".
    seed : int, Generator or None
        Randomness of the permutations (same seed, same result).

    Returns
    -------
    OutcomesResult

    Notes
    -----
    Spikes are tested against baseline with the spike-episode block permutation test of
    :mod:`embdrift.stats.association`, which keeps each outcome series whole (its
    autocorrelation intact) and puts the lag search inside every permutation. The reported
    interval inverts the same test and is conditional on the chosen lag.

    Examples
    --------
    >>> import numpy as np
    >>> from embdrift.outcomes import analyze
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(400) * 3600.0
    >>> d = rng.normal(size=400); d[100:104] += 8; d[250:253] += 8; d[330:333] += 8
    >>> spike = np.zeros(400); spike[[100, 101, 102, 103, 250, 251, 252, 330, 331, 332]] = 1
    >>> success = 0.8 - 0.1 * np.roll(spike, 2) + 0.01 * rng.normal(size=400)
    >>> res = analyze((t, d), {"success_rate": (t, success)}, bucket="1h", season=None)
    >>> res.ranking[0].degraded, res.ranking[0].lag
    (True, 2)
    """
    alpha = check_probability(alpha, name="alpha")
    max_lag = check_int(max_lag, name="max_lag", low=0)
    min_buckets = check_int(min_buckets, name="min_buckets", low=3)
    spikes = check_choice(spikes, name="spikes", choices=("mad", "decision"))
    correction = check_choice(correction, name="correction", choices=("minp", "holm", "none"))
    if not (isinstance(k, numbers.Real) and k > 0):
        raise InvalidParameterError(f"The 'k' parameter must be a positive float. Got {k!r}.")
    min_perm = int(math.ceil(1.0 / alpha)) - 1
    n_permutations = check_int(n_permutations, name="n_permutations", low=max(min_perm, 1))
    rng = check_rng(seed)

    d_series = _as_series(drift, "drift")
    if isinstance(outcomes, Mapping):
        o_series = [_as_series(v, str(name)) for name, v in outcomes.items()]
    else:
        o_series = [
            _as_series(v, getattr(v, "name", f"outcome_{i}")) for i, v in enumerate(outcomes)
        ]
    if not o_series:
        raise InvalidSeriesError("outcomes is empty; pass at least one outcome series.")
    names = [s.name for s in o_series]
    if len(set(names)) != len(names):
        raise InvalidSeriesError(f"outcome names must be unique; got {names}.")
    signs = {s.name: (1.0 if bad_direction(s.name, directions) == "up" else -1.0) for s in o_series}
    if spikes == "decision" and d_series.drifted is None:
        raise InvalidParameterError(
            "spikes='decision' needs drift decisions (a 'drifted' flag per drift point); got a"
            " drift series without them. Use spikes='mad' or load the drift from the store."
        )

    # ---- the common grid: the drift series' span, at a shared bucket --------------------
    if bucket is None:
        spacings = [
            float(np.median(np.diff(s.time))) for s in [d_series, *o_series] if s.time.size > 1
        ]
        if not spacings:
            raise InsufficientDataError(
                "bucket cannot be inferred from single-point series; pass bucket='1h' or similar."
            )
        bucket_s = max(spacings)
    else:
        bucket_s = parse_duration(bucket)
    notes: list[str] = []
    start = math.floor(d_series.time[0] / bucket_s) * bucket_s
    n_buckets = int(math.floor((d_series.time[-1] - start) / bucket_s)) + 1
    if n_buckets > 5_000_000:
        raise InvalidParameterError(
            f"The 'bucket' parameter ({bucket_s:g} s) makes {n_buckets} buckets over the drift"
            " span; choose a coarser bucket."
        )
    times = start + bucket_s * np.arange(n_buckets)
    d_vals, d_valid, d_cov = _bucketize(d_series, start, bucket_s, n_buckets, weighted=False)
    coverage = [d_cov]
    if d_cov.coverage < 1.0:
        notes.append(
            f"drift has {n_buckets - d_cov.buckets_filled} empty bucket(s) of {n_buckets};"
            " they count neither as spike nor as baseline"
        )
    if spikes == "decision":
        assert d_series.drifted is not None
        flagged = Series("drift", d_series.time, d_series.drifted.astype(np.float64))
        frac, _, _ = _bucketize(flagged, start, bucket_s, n_buckets, weighted=False)
        spike_mask = np.nan_to_num(frac) > 0
        threshold = float("nan")
    else:
        rule = robust_spikes(np.nan_to_num(d_vals), d_valid, k=float(k))
        spike_mask = rule.spikes
        threshold = rule.threshold
        if rule.scale == 0.0:
            notes.append("drift is constant: no spikes")

    o_vals: dict[str, np.ndarray] = {}
    o_valid: dict[str, np.ndarray] = {}
    for s in o_series:
        vals, valid, cov = _bucketize(s, start, bucket_s, n_buckets, weighted=True)
        o_vals[s.name], o_valid[s.name] = vals, valid
        coverage.append(cov)
        if cov.median_spacing is not None and cov.median_spacing > 1.5 * bucket_s:
            notes.append(
                f"{s.name} is sampled every {cov.median_spacing:g} s, coarser than the"
                f" {bucket_s:g} s bucket: {n_buckets - cov.buckets_filled} gap bucket(s)"
            )
    if all(c.n_used == 0 for c in coverage[1:]):
        spans = "; ".join(f"{s.name} {_iso(s.time[0])}..{_iso(s.time[-1])}" for s in o_series)
        raise SeriesAlignmentError(
            f"no outcome overlaps the drift series ({_iso(d_series.time[0])}.."
            f"{_iso(d_series.time[-1])}); outcomes: {spans}. Pass series that cover the same"
            " period (check time zones and units: seconds vs milliseconds)."
        )

    # ---- seasonal phases -------------------------------------------------------------------
    n_phases = 1
    phase = np.zeros(n_buckets, dtype=np.int64)
    if season is not None:
        season_s = parse_duration(season, name="season")
        span = n_buckets * bucket_s
        if season_s <= bucket_s:
            notes.append(f"season {season_s:g} s is not longer than the bucket: not adjusted")
        elif span < 3 * season_s:
            notes.append(f"span {span / season_s:.1f} seasons (< 3): seasonality not adjusted")
        else:
            n_phases = int(math.ceil(season_s / bucket_s))
            phase = (np.floor(np.mod(times, season_s) / bucket_s).astype(np.int64)) % n_phases

    x = spike_mask.astype(np.float64)
    n_spikes = int(spike_mask.sum())
    n_base = int(d_valid.sum()) - n_spikes

    effects: dict[str, OutcomeEffect] = {}
    testable: list[str] = []
    for s in o_series:
        name = s.name
        direction = "up" if signs[name] > 0 else "down"
        valid = o_valid[name]
        paired = int((valid & d_valid).sum())
        reason = None
        status = "not enough data"
        if coverage[1 + names.index(name)].n_used == 0:
            reason = (
                f"no point inside the drift span ({_iso(times[0])}..{_iso(times[-1] + bucket_s)})"
            )
        elif n_spikes == 0:
            status, reason = "no spikes", "the drift series has no spike to compare against"
        elif n_base < 2:
            reason = "almost every drift bucket is a spike: no baseline"
        elif paired < (needed := max(min_buckets, max_lag + 3)):
            reason = f"{paired} bucket(s) with both drift and outcome; need {needed}"
        elif np.ptp(o_vals[name][valid]) == 0:
            status, reason = "constant", "the outcome is constant: nothing can change"
        if reason is not None:
            effects[name] = OutcomeEffect(name, direction, status, message=reason)
        else:
            testable.append(name)

    if testable:
        patterns = SpikePatterns(
            np.vstack([x, episode_permutations(x, d_valid, n_permutations, rng)]),
            d_valid,
            phase,
            n_phases,
        )
        scores = np.stack(
            [
                patterns.scores(
                    np.nan_to_num(o_vals[n]), o_valid[n], sign=signs[n], max_lag=max_lag
                )
                for n in testable
            ],
            axis=1,
        )
        test = lag_permutation_test(scores, correction=correction)
        for j, name in enumerate(testable):
            direction = "up" if signs[name] > 0 else "down"
            lag = int(test.lag[j])
            if not math.isfinite(float(test.statistic[j])):
                effects[name] = OutcomeEffect(
                    name,
                    direction,
                    "not enough data",
                    message="no lag leaves both spike and baseline buckets with outcome data",
                )
                continue
            y = np.nan_to_num(o_vals[name])
            eff = lag_effect(x, d_valid, y, o_valid[name], lag=lag, phase=phase, n_phases=n_phases)
            if not math.isfinite(eff.effect) or eff.n_spike < 2 or eff.n_baseline < 2:
                effects[name] = OutcomeEffect(
                    name,
                    direction,
                    "not enough data",
                    n_spike=eff.n_spike,
                    n_baseline=eff.n_baseline,
                    message=(
                        f"at lag {lag}: {eff.n_spike} spike and {eff.n_baseline} baseline"
                        " bucket(s) with outcome data; need at least 2 of each"
                    ),
                )
                continue
            ci_low, ci_high = patterns.interval(y, o_valid[name], lag=lag, alpha=alpha)
            rho = _spearman_at_lag(d_vals, d_valid, y, o_valid[name], lag, phase, n_phases)
            p_adj = float(test.p_adjusted[j])
            degraded = p_adj <= alpha and signs[name] * eff.effect > 0
            std_eff = signs[name] * eff.effect / eff.resid_sd if eff.resid_sd > 0 else math.nan
            rel = eff.effect / eff.baseline_mean if eff.baseline_mean else math.nan
            word = "worse" if signs[name] * eff.effect > 0 else "better"
            effects[name] = OutcomeEffect(
                name=name,
                bad_direction=direction,
                status="ok",
                degraded=bool(degraded),
                effect=eff.effect,
                ci_low=ci_low,
                ci_high=ci_high,
                relative_effect=rel,
                standardized_effect=std_eff,
                spike_mean=eff.spike_mean,
                baseline_mean=eff.baseline_mean,
                p_value=p_adj,
                p_value_raw=float(test.p_values[j]),
                statistic=float(test.statistic[j]),
                lag=lag,
                spearman=rho,
                n_spike=eff.n_spike,
                n_baseline=eff.n_baseline,
                message=(
                    f"{eff.effect:+.4g} ({word}) {lag} bucket(s) after a spike"
                    + (" — degraded" if degraded else "")
                ),
            )

    def rank_key(e: OutcomeEffect) -> tuple[int, float, float]:
        if e.status != "ok":
            return (1, 0.0, 0.0)
        std = e.standardized_effect if e.standardized_effect is not None else 0.0
        return (
            0,
            e.p_value if e.p_value is not None else 1.0,
            -(std if math.isfinite(std) else 0.0),
        )

    ranking = tuple(sorted((effects[n] for n in names), key=rank_key))
    if n_spikes == 0:
        notes.append("no drift spike found: nothing to pair outcomes with")
    return OutcomesResult(
        ranking=ranking,
        alpha=alpha,
        bucket_seconds=bucket_s,
        max_lag=max_lag,
        spike_rule=spikes,
        spike_threshold=threshold,
        n_phases=n_phases,
        correction=correction,
        n_permutations=n_permutations,
        times=times,
        drift=d_vals,
        spikes=spike_mask,
        outcome_values=o_vals,
        coverage=tuple(coverage),
        notes=tuple(notes),
    )


def _spearman_at_lag(
    d: np.ndarray,
    d_valid: np.ndarray,
    y: np.ndarray,
    y_valid: np.ndarray,
    lag: int,
    phase: np.ndarray,
    n_phases: int,
) -> float | None:
    """Spearman correlation of drift ``d_t`` with the phase-adjusted outcome ``y_{t+lag}``."""
    t_len = d.size
    w = d_valid[: t_len - lag] & y_valid[lag:]
    if w.sum() < 3:
        return None
    ys = y[lag:]
    ph = phase[lag:]
    sums = np.bincount(ph[w], weights=ys[w], minlength=n_phases)
    counts = np.bincount(ph[w], minlength=n_phases)
    means = np.divide(sums, counts, out=np.zeros(n_phases), where=counts > 0)
    resid = (ys - means[ph])[w]
    drift = d[: t_len - lag][w]
    if np.ptp(resid) == 0 or np.ptp(drift) == 0:
        return None
    return float(stats.spearmanr(drift, resid).statistic)


# ---- item-level outcomes per drifted region ----------------------------------------------


@dataclass(frozen=True, slots=True)
class RegionRate:
    """One region's outcome rate against the reference.

    Attributes
    ----------
    region : str
        The region label (e.g. ``"3"`` for new cluster 3).
    n : int
        Current items in the region.
    share : float
        ``n`` over all current items.
    rate, ci_low, ci_high : float
        Outcome rate (mean) in the region and its interval (Wilson for 0/1 outcomes, Student t
        for numbers).
    difference, diff_low, diff_high : float
        ``rate - reference rate`` and its interval (Newcombe hybrid score, or Welch).
    p_value, p_adjusted : float
        One-sided test that the region is worse than the reference (Fisher's exact test for
        0/1, Welch's t-test for numbers), and its Holm adjustment across regions.
    worse : bool
        ``p_adjusted <= alpha``.
    """

    region: str
    n: int
    share: float
    rate: float
    ci_low: float
    ci_high: float
    difference: float
    diff_low: float
    diff_high: float
    p_value: float
    p_adjusted: float
    worse: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "n": self.n,
            "share": self.share,
            "rate": self.rate,
            "ci": [_num(self.ci_low), _num(self.ci_high)],
            "difference": self.difference,
            "difference_ci": [_num(self.diff_low), _num(self.diff_high)],
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "worse": self.worse,
        }


@dataclass(frozen=True, slots=True)
class RegionReport:
    """Per-region outcome rates of the current window against the reference.

    Attributes
    ----------
    name, bad_direction, kind : str
        Outcome name, its bad direction, ``"rate"`` (0/1 outcomes) or ``"mean"``.
    alpha : float
        Level of the intervals (``1 - alpha``) and of ``worse``.
    reference_n : int
    reference_rate, reference_low, reference_high : float
        The reference rate and its interval.
    regions : tuple of RegionRate
        Regions ordered from most to least worse (by difference in the bad direction).
    """

    name: str
    bad_direction: str
    kind: str
    alpha: float
    reference_n: int
    reference_rate: float
    reference_low: float
    reference_high: float
    regions: tuple[RegionRate, ...]

    def describe(self) -> list[str]:
        """One sentence per region, e.g. ``region 3: 5.1% of traffic, no_answer rate 31.0%
        [27.2%, 35.1%] vs 7.0% [6.5%, 7.6%] in the reference``."""
        lines = []
        pct = self.kind == "rate"

        def fmt(v: float) -> str:
            return f"{100 * v:.1f}%" if pct else f"{v:.4g}"

        for r in self.regions:
            lines.append(
                f"region {r.region}: {100 * r.share:.1f}% of traffic, {self.name}"
                f" {self.kind} {fmt(r.rate)} [{fmt(r.ci_low)}, {fmt(r.ci_high)}] vs"
                f" {fmt(self.reference_rate)} [{fmt(self.reference_low)},"
                f" {fmt(self.reference_high)}] in the reference" + (" — worse" if r.worse else "")
            )
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "bad_direction": self.bad_direction,
            "kind": self.kind,
            "alpha": self.alpha,
            "reference": {
                "n": self.reference_n,
                "rate": self.reference_rate,
                "ci": [self.reference_low, self.reference_high],
            },
            "regions": [r.to_dict() for r in self.regions],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)


def _item_values(x: npt.ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "iufb" or arr.ndim != 1:
        raise InvalidSeriesError(
            f"{name} must be a 1-D array of numbers (0/1 or values); got dtype {arr.dtype},"
            f" shape {arr.shape}."
        )
    out = arr.astype(np.float64)
    if out.size == 0:
        raise InvalidSeriesError(f"{name} is empty; it needs one outcome per item.")
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        raise InvalidSeriesError(
            f"{name} must be finite; {bad.size} item(s) hold NaN or inf (first at {int(bad[0])})."
            " Drop items without an outcome."
        )
    return out


def region_rates(
    regions: npt.ArrayLike,
    outcome: npt.ArrayLike,
    reference_outcome: npt.ArrayLike,
    *,
    name: str = "outcome",
    direction: str | None = None,
    alpha: float = 0.05,
) -> RegionReport:
    """Outcome rate per drifted region of the current window vs the reference.

    Parameters
    ----------
    regions : array-like
        (n,) region label per current item (ints or strings; e.g. the new-cluster index from
        ``explain``, or -1/"other" for items outside any drifted region).
    outcome : array-like
        (n,) outcome per current item: 0/1 (answered, clicked, escalated) or numbers.
    reference_outcome : array-like
        (m,) the same outcome over the reference window.
    name : str
        Outcome name (its bad direction is guessed from it unless ``direction`` is given).
    direction : {"up", "down"} or None
        Bad direction.
    alpha : float
        Interval level ``1 - alpha`` and test level.

    Returns
    -------
    RegionReport

    Notes
    -----
    0/1 outcomes get Wilson (1927) intervals, the Newcombe (1998) hybrid score interval for
    the difference, and a one-sided Fisher exact test in the bad direction; numeric outcomes
    get Student-t intervals, Welch's interval and Welch's one-sided t-test (when neither side
    varies, Welch's t is undefined and the exact permutation test of the region mean gives
    ``1 / C(n + m, n)`` in the bad direction, 1 otherwise; one item against a varying
    reference gets 1). Regions are Holm-adjusted. Items are assumed independent (no time
    dependence within a window).

    Examples
    --------
    >>> import numpy as np
    >>> from embdrift.outcomes import region_rates
    >>> regions = np.array([0] * 900 + [3] * 100)
    >>> current = np.r_[np.zeros(837), np.ones(63), np.zeros(69), np.ones(31)]
    >>> reference = np.r_[np.zeros(930), np.ones(70)]
    >>> rep = region_rates(regions, current, reference, name="no_answer")
    >>> rep.regions[0].region, round(rep.regions[0].rate, 2), rep.regions[0].worse
    ('3', 0.31, True)
    """
    alpha = check_probability(alpha, name="alpha")
    labels = np.asarray(regions)
    if labels.ndim != 1:
        raise InvalidSeriesError(f"regions must be 1-D (one label per item); got {labels.shape}.")
    cur = _item_values(outcome, "outcome")
    ref = _item_values(reference_outcome, "reference_outcome")
    if labels.size != cur.size:
        raise InvalidSeriesError(
            f"regions and outcome must have one entry per current item; got {labels.size}"
            f" labels and {cur.size} outcomes."
        )
    bad = direction if direction is not None else bad_direction(name)
    bad = bad_direction(name, {name: bad})
    sign = 1.0 if bad == "up" else -1.0
    binary = bool(np.all((cur == 0) | (cur == 1)) and np.all((ref == 0) | (ref == 1)))
    m = ref.size
    if binary:
        k_ref = int(ref.sum())
        ref_rate = k_ref / m
        lo, hi = wilson_interval(k_ref, m, alpha=alpha)
        ref_low, ref_high = float(lo), float(hi)
    else:
        if m < 2:
            raise InsufficientDataError(
                f"reference_outcome holds {m} item; a numeric outcome needs at least 2 reference"
                " items to estimate its spread. Pass more reference items (or 0/1 outcomes)."
            )
        ref_rate = float(ref.mean())
        ref_low, ref_high = mean_interval(ref, alpha=alpha)
    keys = np.unique(labels.astype(str))
    str_labels = labels.astype(str)
    rows = []
    for key in keys:
        vals = cur[str_labels == key]
        n = vals.size
        if binary:
            k = int(vals.sum())
            lo, hi = wilson_interval(k, n, alpha=alpha)
            d_lo, d_hi = newcombe_interval(k, n, k_ref, m, alpha=alpha)
            table = [[k, n - k], [k_ref, m - k_ref]]
            alt = "greater" if sign > 0 else "less"
            p = float(stats.fisher_exact(table, alternative=alt).pvalue)
            rate, c_lo, c_hi = k / n, float(lo), float(hi)
        else:
            rate = float(vals.mean())
            c_lo, c_hi = mean_interval(vals, alpha=alpha)
            d_lo, d_hi = welch_interval(vals, ref, alpha=alpha)
            if n >= 2 and (np.ptp(vals) > 0 or np.ptp(ref) > 0):
                alt = "greater" if sign > 0 else "less"
                p = float(stats.ttest_ind(vals, ref, equal_var=False, alternative=alt).pvalue)
            elif np.ptp(vals) == 0 and np.ptp(ref) == 0 and sign * (rate - ref_rate) > 0:
                # Neither side varies (Welch's t is undefined): the exact permutation test of
                # the region mean; only the observed split is as extreme, p = 1 / C(n + m, n).
                log_splits = special.gammaln(n + m + 1) - special.gammaln(n + 1)
                log_splits -= special.gammaln(m + 1)
                p = max(math.exp(-float(log_splits)), float(np.finfo(np.float64).tiny))
            else:
                p = 1.0
        rows.append((str(key), n, rate, c_lo, c_hi, rate - ref_rate, d_lo, d_hi, p))
    p_adj = holm(np.array([r[-1] for r in rows]))
    out = [
        RegionRate(
            region=r[0],
            n=r[1],
            share=r[1] / cur.size,
            rate=r[2],
            ci_low=r[3],
            ci_high=r[4],
            difference=r[5],
            diff_low=r[6],
            diff_high=r[7],
            p_value=r[8],
            p_adjusted=float(pa),
            worse=bool(pa <= alpha),
        )
        for r, pa in zip(rows, p_adj, strict=True)
    ]
    out.sort(key=lambda r: (-sign * r.difference, r.region))
    return RegionReport(
        name=name,
        bad_direction=bad,
        kind="rate" if binary else "mean",
        alpha=alpha,
        reference_n=m,
        reference_rate=ref_rate,
        reference_low=ref_low,
        reference_high=ref_high,
        regions=tuple(out),
    )
