"""The DuckDB store: real file, round trips, series, and what a locked file says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from embdrift import Reference
from embdrift.store import Store
from embdrift.synthetic import make_scenario


def test_results_round_trip_and_series(tmp_path: Path) -> None:
    ref_rows, cur = make_scenario("spread", n_reference=200, n_current=100, dim=16, seed=0)
    ref = Reference.fit(ref_rows)
    store = Store(tmp_path / "nested" / "s.duckdb")
    assert store.results() == []
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ids = []
    for i in range(3):
        res = ref.compare(cur[i * 30 : (i + 1) * 30 + 10], n_permutations=49, seed=i)
        ids.append(
            store.append_result(
                res,
                source="test",
                stream="s1",
                window_start=t0 + timedelta(hours=i),
                window_end=t0 + timedelta(hours=i + 1),
            )
        )
    store.append_result(res, source="batch-check")
    assert ids == sorted(ids)
    rows = store.results(stream="s1")
    assert [r.id for r in rows] == ids
    assert rows[-1].result.metrics["mmd"].value == res.metrics["mmd"].value
    series = store.drift_series("s1", "mmd")
    assert [t for t, *_ in series] == [t0 + timedelta(hours=i + 1) for i in range(3)]
    assert len(store.results()) == 4
    assert len(store.results(limit=2)) == 2
