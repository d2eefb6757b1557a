"""StreamMonitor: a reference, windows of sketches, a calibrated test per window, an alert.

The stream is cut into panes of ``step`` (rows or time); a window is the merge of the last
``window / step`` panes (tumbling when step == window, sliding otherwise). Each closed window
is tested against the reference with the null of the sketch statistics at its size
(:class:`~embdrift.stream.SketchNull`), combined across metrics by min-p, exactly as the batch
check combines its permutation p-values.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from embdrift._validation import as_embeddings, check_int, check_probability
from embdrift.errors import (
    IncompatibleSketchError,
    InvalidParameterError,
    SketchFormatError,
    TimestampOrderError,
)
from embdrift.reference import Reference
from embdrift.results import DriftResult, MetricResult
from embdrift.stats.permutation import combine_min_p
from embdrift.stream import _codec
from embdrift.stream.basis import StreamBasis
from embdrift.stream.calibration import SketchNull
from embdrift.stream.sketches import _ids_for
from embdrift.stream.sketchset import SketchSet
from embdrift.stream.statistics import (
    STREAM_DECISION_METRICS,
    STREAM_METRICS,
    drift_scores,
    effect_size,
    sketch_statistics,
)

__all__ = ["StreamMonitor", "WindowResult", "check_time_order"]

_NS = 1_000_000_000

#: Calibrated nulls in use, shared by every monitor of one reference with the same settings (a
#: service runs many streams on one reference). The basis and the null are deterministic
#: functions of the reference, the settings and the seed, so sharing changes no result, and the
#: null of a window size is simulated once instead of once per stream. Held weakly: an entry
#: goes with the last monitor that uses it; it keeps arrays derived from the reference, not
#: the Reference object the first monitor was given.
_SHARED_NULLS: weakref.WeakValueDictionary[tuple[Any, ...], SketchNull] = (
    weakref.WeakValueDictionary()
)
_SHARED_LOCK = threading.Lock()


def _shared_null(
    reference: Reference,
    *,
    n_frequencies: int,
    n_projections: int,
    quantile_k: int,
    n_calibration: int,
    seed: int,
) -> SketchNull:
    """The :class:`SketchNull` (and its :class:`StreamBasis`) for these settings: the one in
    use by another monitor, or a new one."""
    key = (reference.reference_id, n_frequencies, n_projections, quantile_k, n_calibration, seed)
    with _SHARED_LOCK:
        null = _SHARED_NULLS.get(key)
        if null is None:
            basis = StreamBasis(
                reference, n_frequencies=n_frequencies, n_projections=n_projections, seed=seed
            )
            null = SketchNull(
                basis,
                reference,
                n_calibration=n_calibration,
                quantile_k=quantile_k,
                seed=seed,
            )
            _SHARED_NULLS[key] = null
    return null


def check_time_order(ts: np.ndarray, last_ts: int | None) -> None:
    """Raise :class:`TimestampOrderError` unless ``ts`` (int64 ns) is non-decreasing and starts
    at or after ``last_ts``, the last timestamp the stream has seen (None: nothing yet)."""
    back = np.flatnonzero(np.diff(ts) < 0)
    if back.size:
        raise TimestampOrderError(
            f"'timestamps' must be non-decreasing; row {int(back[0]) + 1} is earlier than"
            f" row {int(back[0])}. Sort the batch by time before sending it."
        )
    if last_ts is not None and ts.size and ts[0] < last_ts:
        raise TimestampOrderError(
            f"'timestamps' start at {np.datetime64(int(ts[0]), 'ns')}, before the last"
            f" timestamp already seen ({np.datetime64(last_ts, 'ns')}). Late rows cannot join"
            " closed windows; drop them or send the stream in time order."
        )


@dataclass(frozen=True, slots=True)
class WindowResult:
    """One closed window and its test.

    Attributes
    ----------
    index : int
        Running number of the window (0-based).
    start, end : int or numpy.datetime64
        Half-open bounds [start, end): row numbers for count windows, timestamps (ns) for
        time windows.
    result : DriftResult
        The calibrated test of the window against the reference (``method="sketch"``).
    alert : bool
        The monitor's alert state after this window.
    example_ids : tuple of str
        Ids of up to 20 rows of the window's reservoir sample (examples to look at).
    """

    index: int
    start: Any
    end: Any
    result: DriftResult
    alert: bool
    example_ids: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "start": _bound_to_json(self.start),
            "end": _bound_to_json(self.end),
            "result": self.result.to_dict(),
            "alert": self.alert,
            "example_ids": list(self.example_ids),
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowResult:
        return cls(
            index=int(data["index"]),
            start=_bound_from_json(data["start"]),
            end=_bound_from_json(data["end"]),
            result=DriftResult.from_dict(data["result"]),
            alert=bool(data["alert"]),
            example_ids=tuple(data["example_ids"]),
        )


def _bound_to_json(value: Any) -> Any:
    if isinstance(value, np.datetime64):
        return {"ns": int(value.astype("datetime64[ns]").astype(np.int64))}
    return int(value)


def _bound_from_json(value: Any) -> Any:
    if isinstance(value, dict):
        return np.datetime64(int(value["ns"]), "ns")
    return int(value)


def _as_span(value: Any, name: str) -> tuple[str, int]:
    """("count", rows) for an int, ("time", nanoseconds) for a timedelta."""
    if isinstance(value, bool):
        pass
    elif isinstance(value, int | np.integer):
        return "count", check_int(int(value), name=name, low=1)
    elif isinstance(value, dt.timedelta | np.timedelta64):
        ns = int(np.timedelta64(value, "ns").astype(np.int64))
        if ns > 0:
            return "time", ns
    raise InvalidParameterError(
        f"The {name!r} parameter must be a positive int (rows: count windows) or a positive"
        f" datetime.timedelta (time windows). Got {value!r} instead."
    )


class StreamMonitor:
    """Drift monitor over a stream of embeddings, in bounded memory.

    Parameters
    ----------
    reference : Reference
        The frozen reference every window is compared with.
    window : int or datetime.timedelta
        Window length: rows (fixed-count windows, which keep p-values comparable as traffic
        varies) or time.
    step : int or datetime.timedelta, optional
        Distance between window ends (same kind as ``window``, dividing it). Default
        ``window`` (tumbling windows); smaller gives sliding windows.
    alpha : float
        Level of each window's test: family-wise by min-p over ``STREAM_DECISION_METRICS``
        (mmd, reconstruction_error, residual_mean_shift; the batch verdict's sketchable
        counterparts); every metric also gets its own p-value.
    consecutive : int
        Drifted windows in a row that raise the alert (default 1); one non-drifted window
        clears it.
    n_frequencies, n_projections, quantile_k, reservoir_size : int
        Sketch settings (see :class:`StreamBasis` and :class:`SketchSet`); the reservoir
        budget is split evenly over the ``window / step`` panes of a window.
    n_calibration : int
        Null replicates per window size (:class:`SketchNull`; default 500). P-values are
        multiples of 1 / (n_calibration + 1), so at least 2 / alpha − 1 are required.
    min_window_rows : int
        Time windows with fewer rows are skipped (no test is meaningful on them).
    seed : int
        Seeds the basis, the reservoirs and the calibration.

    Notes
    -----
    False-alarm budget. Each window's test has level ``alpha`` under no drift: its null is
    simulated for the sketch statistics at that window size, and the min-p combination keeps
    the family-wise rate across metrics at alpha (Westfall & Young (1993), Alg. 2.8). Disjoint
    (tumbling) windows are independent given the reference, so the number of windows until a
    false alert is geometric-like: with ``consecutive = r`` its mean (average run length) is
    ARL0 = (1 − α^r) / ((1 − α) α^r) windows (the run-length formula for r successes in a row;
    Feller (1968), *An Introduction to Probability Theory*, Vol. 1, XIII.7), e.g. 20 windows
    for α = 0.05, r = 1 and 420 for r = 2 (:attr:`expected_windows_to_false_alert`). Sliding
    windows share rows, so alarms cluster: the per-window rate stays α, the ARL formula is then
    an approximation. Pick α from the budget: one false alert a week on hourly windows needs
    ARL0 ≥ 168, e.g. α = 0.006 with r = 1, or α = 0.075 with r = 2.

    Examples
    --------
    >>> import numpy as np
    >>> from embdrift import Reference
    >>> rng = np.random.default_rng(0)
    >>> ref = Reference.fit(rng.normal(size=(600, 8)), n_components=3)
    >>> mon = StreamMonitor(ref, window=200, n_calibration=219, reservoir_size=50)
    >>> _ = mon.update(rng.normal(size=(400, 8)))
    >>> [w.result.drifted for w in mon.check()]
    [False, False]
    >>> _ = mon.update(rng.normal(size=(200, 8)) + 1.0)
    >>> [w.result.drifted for w in mon.check()], mon.alert
    ([True], True)
    """

    _kind = "StreamMonitor"

    def __init__(
        self,
        reference: Reference,
        *,
        window: int | dt.timedelta = 1000,
        step: int | dt.timedelta | None = None,
        alpha: float = 0.05,
        consecutive: int = 1,
        n_frequencies: int = 512,
        n_projections: int = 16,
        quantile_k: int = 200,
        reservoir_size: int = 10_000,
        n_calibration: int = 500,
        min_window_rows: int = 20,
        seed: int = 0,
    ) -> None:
        if not isinstance(reference, Reference):
            raise TypeError(
                f"The 'reference' parameter must be an embdrift Reference; got"
                f" {type(reference).__name__}."
            )
        self.reference = reference
        self.window = window
        self.step = window if step is None else step
        self.alpha = check_probability(alpha, name="alpha")
        self.consecutive = check_int(consecutive, name="consecutive", low=1)
        self.quantile_k = quantile_k
        self.reservoir_size = check_int(reservoir_size, name="reservoir_size", low=0)
        self.min_window_rows = check_int(min_window_rows, name="min_window_rows", low=2)
        self.seed = check_int(seed, name="seed", low=0)
        kind_w, span_w = _as_span(window, "window")
        kind_s, span_s = _as_span(self.step, "step")
        if kind_w != kind_s or span_w % span_s:
            raise InvalidParameterError(
                f"The 'step' parameter must be of the same kind as 'window' (rows or time) and"
                f" divide it; got window={window!r}, step={self.step!r}."
            )
        n_cal = check_int(n_calibration, name="n_calibration", low=19)
        if 2.0 / (n_cal + 1) > self.alpha:
            # The smallest attainable p-value is 1 / (B + 1): keep it at most alpha / 2.
            raise InvalidParameterError(
                f"n_calibration={n_cal} is too small for alpha={self.alpha}: p-values are"
                f" multiples of 1/(n_calibration + 1). Use n_calibration >="
                f" {math.ceil(2.0 / self.alpha) - 1}."
            )
        self._mode = kind_w
        self._step = span_s
        self._n_panes = span_w // span_s
        self.null = _shared_null(
            reference,
            n_frequencies=n_frequencies,
            n_projections=n_projections,
            quantile_k=quantile_k,
            n_calibration=n_calibration,
            seed=seed,
        )
        self.basis = self.null.basis
        self._reset()

    def _reset(self) -> None:
        self._panes: deque[tuple[int, SketchSet]] = deque(maxlen=self._n_panes)
        self._current = self._new_pane()
        self._current_key: int | None = None if self._mode == "time" else 0
        self._rows_seen = 0
        self._last_ts: int | None = None
        self._window_index = 0
        self._run = 0
        self._alert = False
        self._pending: list[WindowResult] = []

    def _new_pane(self) -> SketchSet:
        return SketchSet(
            self.basis,
            quantile_k=self.quantile_k,
            reservoir_size=-(-self.reservoir_size // self._n_panes) if self.reservoir_size else 0,
            seed=self.seed,
        )

    # ------------------------------------------------------------------ properties
    @property
    def count(self) -> int:
        """Rows seen since the start."""
        return self._rows_seen

    @property
    def alert(self) -> bool:
        return self._alert

    @property
    def mode(self) -> str:
        """``"count"`` or ``"time"``."""
        return self._mode

    @property
    def expected_windows_to_false_alert(self) -> float:
        """ARL0 = (1 − α^r) / ((1 − α) α^r) for independent windows (see Notes)."""
        a, r = self.alpha, self.consecutive
        return (1.0 - a**r) / ((1.0 - a) * a**r)

    def __repr__(self) -> str:
        return (
            f"StreamMonitor(reference_id={self.reference.reference_id!r}, mode={self._mode!r},"
            f" window={self.window!r}, step={self.step!r}, alpha={self.alpha},"
            f" rows={self._rows_seen})"
        )

    # ------------------------------------------------------------------ feeding
    def update(
        self,
        batch: npt.ArrayLike,
        timestamps: npt.ArrayLike | None = None,
        ids: Sequence[Any] | np.ndarray | None = None,
    ) -> StreamMonitor:
        """Feed rows (m, d); time windows need ``timestamps`` (m,), non-decreasing.

        Everything is validated before any state changes, so a rejected batch leaves the
        monitor exactly as it was. Windows that close are tested at once; :meth:`check`
        returns their results.
        """
        x = as_embeddings(batch, name="batch", dim=self.basis.dim)
        m = x.shape[0]
        id_arr = _ids_for(ids, m, start=self._rows_seen)
        ts = self._timestamps(timestamps, m)
        if self._mode == "count":
            self._update_count(x, id_arr)
        else:
            assert ts is not None
            self._update_time(x, id_arr, ts)
        self._rows_seen += m
        if ts is not None:
            self._last_ts = int(ts[-1])
        return self

    def _timestamps(self, timestamps: npt.ArrayLike | None, m: int) -> np.ndarray | None:
        if timestamps is None:
            if self._mode == "time":
                raise InvalidParameterError(
                    "Time windows need 'timestamps' (one per row); pass them, or use an int"
                    " window for fixed-count windows."
                )
            return None
        raw = np.asarray(timestamps)
        if raw.shape != (m,):
            raise InvalidParameterError(
                f"The 'timestamps' parameter must hold one timestamp per row ({m}); got shape"
                f" {raw.shape}."
            )
        if raw.dtype.kind == "M":
            ts = raw.astype("datetime64[ns]").astype(np.int64)
            if np.isnat(raw).any():
                raise InvalidParameterError("The 'timestamps' parameter holds NaT values.")
        elif raw.dtype.kind in "iuf":
            secs = raw.astype(np.float64)
            if not np.isfinite(secs).all():
                raise InvalidParameterError("The 'timestamps' parameter holds NaN or inf.")
            ts = np.round(secs * _NS).astype(np.int64)
        else:
            raise InvalidParameterError(
                f"The 'timestamps' parameter must be datetime64 or numeric seconds since the"
                f" epoch; got dtype {raw.dtype}."
            )
        check_time_order(ts, self._last_ts)
        return ts

    def _update_count(self, x: np.ndarray, ids: np.ndarray) -> None:
        pos = 0
        while pos < x.shape[0]:
            room = self._step - self._current.count
            take = min(room, x.shape[0] - pos)
            self._current.update(x[pos : pos + take], ids=ids[pos : pos + take])
            pos += take
            if self._current.count == self._step:
                key = int(self._current_key or 0)
                self._close_pane(key)
                self._current_key = key + 1
                if len(self._panes) == self._n_panes:
                    self._evaluate_window(key)
                    self._panes.popleft()  # only the last n_panes - 1 panes are needed later

    def _update_time(self, x: np.ndarray, ids: np.ndarray, ts: np.ndarray) -> None:
        keys = ts // self._step
        cuts = np.flatnonzero(np.diff(keys)) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, keys.size], strict=True):
            key = int(keys[lo])
            if self._current_key is not None and key > self._current_key:
                self._advance_to(key)
            self._current_key = key
            self._current.update(x[lo:hi], ids=ids[lo:hi])

    def _advance_to(self, key: int) -> None:
        """Close the open time pane and every window that ends before pane ``key``."""
        assert self._current_key is not None
        last = self._current_key
        self._close_pane(last)
        for end in range(last, min(key - 1, last + self._n_panes - 1) + 1):
            self._evaluate_window(end)
        while self._panes and self._panes[0][0] <= key - self._n_panes:
            self._panes.popleft()  # no window ending at pane key or later contains it

    def flush(self) -> StreamMonitor:
        """End of stream: close the open time pane and its windows (count panes must fill)."""
        if self._mode == "time" and self._current_key is not None and self._current.count:
            self._advance_to(self._current_key + 1)
            self._current_key = None
        return self

    def _close_pane(self, key: int) -> None:
        self._panes.append((key, self._current))
        self._current = self._new_pane()

    # ------------------------------------------------------------------ testing
    def _evaluate_window(self, end_key: int) -> None:
        parts = [s for k, s in self._panes if end_key - self._n_panes < k <= end_key]
        if not parts:
            return
        merged = parts[0].copy()
        for part in parts[1:]:
            merged.merge(part)
        start: Any
        end: Any
        if self._mode == "count":
            start = (end_key - self._n_panes + 1) * self._step
            end = (end_key + 1) * self._step
        else:
            start = np.datetime64((end_key - self._n_panes + 1) * self._step, "ns")
            end = np.datetime64((end_key + 1) * self._step, "ns")
            if merged.count < self.min_window_rows:
                return
        result = self.test(merged)
        self._run = self._run + 1 if result.drifted else 0
        self._alert = self._run >= self.consecutive
        sample = merged.reservoir
        top = np.argsort(sample.keys)[::-1][:20]
        self._pending.append(
            WindowResult(
                index=self._window_index,
                start=start,
                end=end,
                result=result,
                alert=self._alert,
                example_ids=tuple(str(i) for i in sample.ids[top]),
            )
        )
        self._window_index += 1

    def test(self, sketches: SketchSet) -> DriftResult:
        """The calibrated drift test of one window's sketches against the reference."""
        t0 = time.perf_counter()
        m = sketches.count
        if m < 2:
            raise InvalidParameterError(f"A window needs at least 2 rows to test; got {m}.")
        ref_side = self.null.reference_side
        params = self.reference.params
        values = sketch_statistics(
            ref_side,
            sketches.view(ref_side),
            pc1_edges=self.basis.pc1_edges,
            smoothing=params.smoothing,
        )
        t1 = time.perf_counter()
        null = self.null.null_scores(m)
        t2 = time.perf_counter()
        scores = np.vstack([drift_scores(values), null])
        outcome = combine_min_p(scores, alpha=self.alpha)
        deciding = [list(STREAM_METRICS).index(name) for name in STREAM_DECISION_METRICS]
        combined_p = combine_min_p(scores[:, deciding], alpha=self.alpha).combined_p_value
        metrics: dict[str, MetricResult] = {}
        for j, name in enumerate(STREAM_METRICS):
            p = float(outcome.p_values[j])
            crit = float(outcome.critical_values[j])
            metrics[name] = MetricResult(
                value=float(values[j]),
                p_value=p,
                threshold=float(np.exp(crit)) if name == "spread_ratio" else crit,
                effect_size=effect_size(name, float(values[j])),
                drifted=p <= self.alpha,
            )
        return DriftResult(
            drifted=combined_p <= self.alpha,
            p_value=combined_p,
            alpha=self.alpha,
            metrics=metrics,
            n_reference=ref_side.count,
            n_current=m,
            reference_id=self.reference.reference_id,
            method="sketch",
            n_permutations=self.null.n_calibration,
            decision_metrics=STREAM_DECISION_METRICS,
            timings={
                "statistics": t1 - t0,
                "calibration": t2 - t1,
                "total": time.perf_counter() - t0,
            },
        )

    def check(self) -> list[WindowResult]:
        """Results of the windows closed since the last call (oldest first), then forgets them."""
        out, self._pending = self._pending, []
        return out

    # ------------------------------------------------------------------ checkpoints
    def state_bytes(self) -> bytes:
        """The monitor's whole state (open pane, panes of the current window, counters, alert
        state and unread results) as bytes without pickle; its length is the memory bound."""
        meta = {
            "reference_id": self.reference.reference_id,
            "settings": self._settings(),
            "current_key": self._current_key,
            "rows_seen": self._rows_seen,
            "last_ts": self._last_ts,
            "window_index": self._window_index,
            "run": self._run,
            "alert": self._alert,
            "pane_keys": [k for k, _ in self._panes],
            "pending": [w.to_dict() for w in self._pending],
        }
        arrays = {"current": np.frombuffer(self._current.to_bytes(), dtype=np.uint8)}
        for i, (_, pane) in enumerate(self._panes):
            arrays[f"pane{i}"] = np.frombuffer(pane.to_bytes(), dtype=np.uint8)
        return _codec.encode(self._kind, meta, arrays)

    def _settings(self) -> dict[str, Any]:
        return {
            "mode": self._mode,
            "step": self._step,
            "n_panes": self._n_panes,
            "alpha": self.alpha,
            "consecutive": self.consecutive,
            "n_frequencies": self.basis.n_frequencies,
            "n_projections": self.basis.n_projections,
            "quantile_k": self.quantile_k,
            "reservoir_size": self.reservoir_size,
            "n_calibration": self.null.n_calibration,
            "min_window_rows": self.min_window_rows,
            "seed": self.seed,
        }

    @classmethod
    def from_state(cls, reference: Reference, data: bytes) -> StreamMonitor:
        """Restore a monitor from :meth:`state_bytes` for the same reference."""
        meta, arrays = _codec.decode(data, cls._kind)
        if meta.get("reference_id") != reference.reference_id:
            raise IncompatibleSketchError(
                f"This monitor state belongs to reference {meta.get('reference_id')!r}, not"
                f" to {reference.reference_id!r}. Load the reference the monitor was built with."
            )
        try:
            s = meta["settings"]
            if s["mode"] == "count":
                window: Any = s["step"] * s["n_panes"]
                step: Any = s["step"]
            else:
                window = dt.timedelta(microseconds=s["step"] * s["n_panes"] / 1000)
                step = dt.timedelta(microseconds=s["step"] / 1000)
            mon = cls(
                reference,
                window=window,
                step=step,
                alpha=s["alpha"],
                consecutive=s["consecutive"],
                n_frequencies=s["n_frequencies"],
                n_projections=s["n_projections"],
                quantile_k=s["quantile_k"],
                reservoir_size=s["reservoir_size"],
                n_calibration=s["n_calibration"],
                min_window_rows=s["min_window_rows"],
                seed=s["seed"],
            )
            mon._step = int(s["step"])  # exact nanoseconds, whatever timedelta rounding did
            mon._current = SketchSet.from_bytes(bytes(arrays["current"]), basis=mon.basis)
            for i, key in enumerate(meta["pane_keys"]):
                pane = SketchSet.from_bytes(bytes(arrays[f"pane{i}"]), basis=mon.basis)
                mon._panes.append((int(key), pane))
            mon._current_key = meta["current_key"]
            mon._rows_seen = int(meta["rows_seen"])
            mon._last_ts = meta["last_ts"]
            mon._window_index = int(meta["window_index"])
            mon._run = int(meta["run"])
            mon._alert = bool(meta["alert"])
            mon._pending = [WindowResult.from_dict(w) for w in meta["pending"]]
        except (KeyError, TypeError) as exc:
            raise SketchFormatError(f"The monitor state is incomplete: missing {exc}.") from None
        return mon
