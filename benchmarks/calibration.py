"""False-alarm rates beyond n=500: conditional on one reference, and at large windows.

Two parts, written to ``benchmarks/RESULTS-calibration.md`` (raw numbers beside it in
``RESULTS-data/calibration-<part>.json``):

* **per-reference**: a monitor keeps one reference and tests window after window, so its
  false-alarm rate is *conditional on that reference* (on its held-out rows and its fit). For
  ``--references`` references (synthetic clusters and real text, n rows each), ``--windows``
  fresh null windows of n rows are tested against each with the batch check
  (``Reference.compare``, default permutations) and with the streaming test
  (``StreamMonitor.test`` on the window's sketches, null calibrated from the reference's own
  splits). Reported: the mean rate, the spread of the per-reference rates (sd, min, max) and
  the part of that spread that binomial noise alone explains, sqrt(a(1-a)/W); the rest,
  sqrt(max(var - a(1-a)/W, 0)), is the between-reference spread.
* **sizes**: the unconditional false-alarm rate of the combined decision at larger windows
  (synthetic n = 5,000 and 20,000 per side, real text n = 2,000), each run a fresh
  (reference, window) pair, ``--size-runs`` runs per size.

Run (about an hour on 2 quiet cores with the defaults)::

    .venv/bin/python benchmarks/calibration.py
    .venv/bin/python benchmarks/calibration.py --parts per-reference --references 20 --windows 100
    .venv/bin/python benchmarks/calibration.py --quick   # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _scenarios as scenarios  # noqa: E402
import numpy as np  # noqa: E402
from run import _blas, _commit, _machine, _versions  # noqa: E402

from embdrift import Reference  # noqa: E402
from embdrift.stream import SketchSet, StreamMonitor  # noqa: E402

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
ALPHA = 0.05
TITLES = {"per-reference": "Per-reference false-alarm rate", "sizes": "Larger windows"}

#: Draws ``n`` rows with a generator.
Sampler = Callable[[int, np.random.Generator], np.ndarray]


def _synthetic_source() -> tuple[Sampler, Sampler]:
    """Samplers of the reference window and of fresh null windows: the benchmark world."""
    world = scenarios._world()
    weights = np.ones(world.centers.shape[0])
    weights[-1] = 0.0

    def window(n: int, rng: np.random.Generator) -> np.ndarray:
        return world.sample(n, weights=weights, seed=rng)[0]

    return window, window


def _real_source(real: scenarios.RealText, seed: int) -> tuple[Sampler, Sampler]:
    """Reference and null windows from disjoint source-stem groups (as the detection part)."""
    rng = np.random.default_rng([seed, 4242])
    in_ref_pool = rng.random(int(real.group.max()) + 1) < 0.5
    ref_pool = in_ref_pool[real.group]
    base = dict.fromkeys(scenarios.REAL_BASE_SECTIONS, 1.0 / len(scenarios.REAL_BASE_SECTIONS))

    def reference(n: int, g: np.random.Generator) -> np.ndarray:
        return real.embeddings[real._draw(base, n, ref_pool, g)]

    def window(n: int, g: np.random.Generator) -> np.ndarray:
        return real.embeddings[real._draw(base, n, ~ref_pool, g)]

    return reference, window


def _spread(rates: np.ndarray, windows: int) -> dict[str, float]:
    binom_var = ALPHA * (1 - ALPHA) / windows
    var = float(np.var(rates, ddof=1)) if rates.size > 1 else float("nan")
    return {
        "mean": float(rates.mean()),
        "sd": math.sqrt(var) if var == var else float("nan"),
        "min": float(rates.min()),
        "max": float(rates.max()),
        "binomial_sd": math.sqrt(binom_var),
        "between_sd": math.sqrt(max(var - binom_var, 0.0)) if var == var else float("nan"),
    }


def per_reference(
    dataset: str, *, n: int, references: int, windows: int, log: Callable[[str], None]
) -> dict[str, object]:
    """Per-reference false-alarm rates of the batch and the streaming decision."""
    real = scenarios.RealText.load() if dataset == "real" else None
    batch_rates, stored_rates, stream_rates = [], [], []
    start = time.perf_counter()
    for r in range(references):
        make_ref, window = _synthetic_source() if real is None else _real_source(real, r)
        rng = np.random.default_rng([r, 777])
        ref = Reference.fit(make_ref(n, rng), seed=r, window_sizes=(n,))
        monitor = StreamMonitor(ref, window=n, alpha=ALPHA, seed=r)
        batch_hits = stored_hits = stream_hits = 0
        for w in range(windows):
            cur = window(n, rng)
            batch_hits += ref.compare(cur, alpha=ALPHA, seed=w).drifted
            stored_hits += ref.compare(cur, alpha=ALPHA, seed=w, calibration="stored").drifted
            sketch = SketchSet(monitor.basis, reservoir_size=0, seed=w).update(cur)
            stream_hits += monitor.test(sketch).drifted
        batch_rates.append(batch_hits / windows)
        stored_rates.append(stored_hits / windows)
        stream_rates.append(stream_hits / windows)
        log(
            f"  {dataset} reference {r + 1}/{references}: batch {batch_rates[-1]:.3f},"
            f" stored {stored_rates[-1]:.3f},"
            f" stream {stream_rates[-1]:.3f} ({time.perf_counter() - start:.0f} s)"
        )
    return {
        "n": n,
        "references": references,
        "windows": windows,
        "batch": {"rates": batch_rates, **_spread(np.array(batch_rates), windows)},
        "stored": {"rates": stored_rates, **_spread(np.array(stored_rates), windows)},
        "stream": {"rates": stream_rates, **_spread(np.array(stream_rates), windows)},
    }


#: How a larger-size run is calibrated: the permutation test of compare, the cluster
#: permutation with the real text's source-stem groups, or the null stored at fit.
CALIBRATION_MODES = ("permutation", "group_permutation", "stored")


def sizes(
    dataset: str,
    n: int,
    mode: str,
    *,
    runs: int,
    log: Callable[[str], None],
    first_seed: int = 50_000,
) -> dict[str, object]:
    """Unconditional false-alarm rate of the combined decision: a fresh pair per run (seeds
    ``first_seed`` on, the same pairs and fit splits for every ``mode``).

    With ``mode`` "group_permutation" (real text only) the reference is fitted with the rows'
    source-stem groups and the current window's groups are passed to ``compare``; "stored"
    fits the reference with ``window_sizes=(n,)`` (and the groups on real text) and checks with
    ``calibration="stored"``."""
    real = scenarios.RealText.load() if dataset == "real" else None
    hits = 0
    per_metric: dict[str, int] = {}
    start = time.perf_counter()
    for run in range(runs):
        seed = first_seed + run
        gx = gy = None
        if real is None:
            x = scenarios.synthetic_window(n, seed)
            y = scenarios.synthetic_window(n, seed + 1_000_000)
        else:
            rx, ry = real.pair_rows("none", n, seed)
            x, y = real.embeddings[rx], real.embeddings[ry]
            if mode != "permutation":
                gx, gy = real.group[rx], real.group[ry]
        if mode == "stored":
            ref = Reference.fit(x, seed=seed, groups=gx, window_sizes=(n,))
            result = ref.compare(y, alpha=ALPHA, seed=seed, calibration="stored")
        else:
            ref = Reference.fit(x, seed=seed, groups=gx)
            result = ref.compare(y, alpha=ALPHA, seed=seed, groups=gy)
        hits += result.drifted
        for name, metric in result.metrics.items():
            per_metric[name] = per_metric.get(name, 0) + bool(metric.drifted)
        if (run + 1) % 50 == 0:
            log(
                f"  {dataset} n={n} {mode}: {run + 1}/{runs} runs,"
                f" {time.perf_counter() - start:.0f} s"
            )
    return {
        "dataset": dataset,
        "n": n,
        "calibration": mode,
        "runs": runs,
        "path": result.path,
        "combined": hits / runs,
        "per_metric": {k: v / runs for k, v in per_metric.items()},
        "seconds": round(time.perf_counter() - start, 1),
    }


def _size_key(row: dict[str, Any]) -> tuple[str, int, str]:
    return (row["dataset"], row["n"], row.get("calibration", "permutation"))


def _size_order(row: dict[str, Any]) -> tuple[int, int, int]:
    dataset, n, mode = _size_key(row)
    return (dataset != "synthetic", n, CALIBRATION_MODES.index(mode))


def _saved_size_rows(file: Path) -> list[dict[str, Any]]:
    """The saved rows of the sizes part, each with the meta of the run that measured it (a
    later run replaces only the rows it measured; files of one run keep one top-level meta)."""
    data = json.loads(file.read_text())
    return [{"meta": data.get("meta"), **row} for row in data["results"]]


def _binomial_interval(runs: int) -> tuple[float, float]:
    """Normal-approximation 99% interval of the observed rate over ``runs`` runs when the
    true rate is ALPHA (clipped to [0, 1])."""
    half = 2.576 * math.sqrt(ALPHA * (1 - ALPHA) / runs)
    return max(ALPHA - half, 0.0), min(ALPHA + half, 1.0)


def render(path: Path, state: Path) -> None:
    """Write the markdown table from the saved parts."""
    lines = [
        "# embdrift calibration beyond n = 500",
        "",
        "Generated by `benchmarks/calibration.py` from `RESULTS-data/calibration-*.json`;"
        " do not edit by hand. alpha = 0.05.",
        "",
    ]
    for part in ("per-reference", "sizes"):
        file = state / f"calibration-{part}.json"
        if not file.exists():
            continue
        data = json.loads(file.read_text())
        if part == "sizes":
            data["results"] = _saved_size_rows(file)
            metas = {
                json.dumps(row["meta"], sort_keys=True): row["meta"] for row in data["results"]
            }
        else:
            metas = {"": data["meta"]}
        lines += ["## " + TITLES[part], ""]
        for meta in metas.values():
            lines += [
                f"- `{meta['command']}` on {meta['date']}, {meta['minutes']} min, commit"
                f" {meta['commit']}; load average {meta['load'][0]} at start,"
                f" {meta['load'][1]} at end, on 2 cores",
                f"  - Machine: {meta['machine']}; BLAS: {meta['blas']}",
                f"  - Versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}",
            ]
        lines.append("")
        if part == "per-reference":
            lines += [
                "| data | decision | references × windows | mean rate | sd of per-reference"
                " rates | binomial sd alone | between-reference sd | min | max |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for dataset, res in data["results"].items():
                for kind in ("batch", "stored", "stream"):
                    if kind not in res:
                        continue
                    s = res[kind]
                    lines.append(
                        f"| {dataset} (n = {res['n']}) | {kind} | {res['references']} ×"
                        f" {res['windows']} | {s['mean']:.3f} | {s['sd']:.3f} |"
                        f" {s['binomial_sd']:.3f} | {s['between_sd']:.3f} | {s['min']:.3f} |"
                        f" {s['max']:.3f} |"
                    )
            lines += [
                "",
                "Each reference is fitted once and tested against fresh null windows, as a"
                " monitor does. The mean rate is the unconditional false-alarm rate; the"
                " between-reference sd is how far one fixed reference's own rate typically sits"
                " from it (the binomial noise of W windows removed). batch: `Reference.compare`"
                " (permutation p-values, exact unconditionally); stored: `Reference.compare(...,"
                ' calibration="stored")` with the null simulated at fit from the reference\'s'
                " held-out rows (window_sizes=(n,)); stream: `StreamMonitor.test`"
                " on the window's sketches with the null simulated from the reference's"
                " held-out rows.",
                "",
            ]
        else:
            lines += [
                "| data | n per side | calibration | path | runs | combined false-alarm rate |"
                " 99% band for alpha at these runs | per-metric range | minutes | measured |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            for res in data["results"]:
                lo, hi = _binomial_interval(res["runs"])
                rates = list(res["per_metric"].values())
                lines.append(
                    f"| {res['dataset']} | {res['n']:,} | {res.get('calibration', 'permutation')} |"
                    f" {res['path']} | {res['runs']} |"
                    f" {res['combined']:.3f} | [{lo:.3f}, {hi:.3f}] |"
                    f" {min(rates):.3f}–{max(rates):.3f} | {res['seconds'] / 60:.1f} |"
                    f" {res['meta']['date']} |"
                )
            lines += [
                "",
                "Real text: the reference and the current window come from disjoint source-stem"
                " groups (families of near-duplicate descriptions), and a window of 2,000 rows"
                " takes most of its pool, so families often sit whole inside one window. Rows of"
                " one family are not exchangeable one by one: the row-level permutation null is"
                " too narrow for them. group_permutation fits the reference with the groups"
                " (the fit/test split keeps each family on one side) and permutes whole families"
                " (`compare(..., groups=...)`); stored uses the same groups for its splits.",
                "",
            ]
    path.write_text("\n".join(lines))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--parts", nargs="*", choices=("per-reference", "sizes"), default=["per-reference", "sizes"]
    )
    p.add_argument(
        "--datasets", nargs="+", choices=("synthetic", "real"), default=["synthetic", "real"]
    )
    p.add_argument("--n", type=int, default=500, help="rows per side in the per-reference part")
    p.add_argument("--references", type=int, default=20)
    p.add_argument("--windows", type=int, default=100, help="null windows per reference")
    p.add_argument("--size-runs", type=int, default=200, help="fresh pairs per larger size")
    p.add_argument(
        "--first-seed",
        type=int,
        default=50_000,
        help="sizes part: seed of the first pair (another value re-measures on other pairs)",
    )
    p.add_argument(
        "--calibrations",
        nargs="+",
        choices=CALIBRATION_MODES,
        default=list(CALIBRATION_MODES),
        help="sizes part: the calibrations to run; rows of the others stay as saved",
    )
    p.add_argument("--synthetic-sizes", type=int, nargs="*", default=[5_000, 20_000])
    p.add_argument("--real-sizes", type=int, nargs="*", default=[2_000])
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, few runs")
    p.add_argument("--out", type=Path, default=HERE / "RESULTS-calibration.md")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.n, args.references, args.windows, args.size_runs = 200, 2, 3, 2
        args.synthetic_sizes, args.real_sizes = [400], [300]
    state = args.out.parent / "RESULTS-data"
    state.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    commit = _commit()  # the code this process loaded, not what is checked out at the end

    def meta(started: float, load: float) -> dict[str, object]:
        return {
            "command": " ".join(shlex.quote(a) for a in ["python", *sys.argv]),
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "minutes": round((time.perf_counter() - started) / 60, 1),
            "commit": commit,
            "load": [round(load, 1), round(os.getloadavg()[0], 1)],
            "machine": _machine(),
            "blas": _blas(),
            "versions": {
                k: v
                for k, v in _versions().items()
                if k in ("python", "embdrift", "numpy", "scipy", "datasketches")
            },
        }

    if "per-reference" in args.parts:
        started, load = time.perf_counter(), os.getloadavg()[0]
        results = {
            ds: per_reference(
                ds, n=args.n, references=args.references, windows=args.windows, log=log
            )
            for ds in args.datasets
        }
        (state / "calibration-per-reference.json").write_text(
            json.dumps({"meta": meta(started, load), "results": results}, indent=1)
        )
    if "sizes" in args.parts:
        started, load = time.perf_counter(), os.getloadavg()[0]
        jobs = [
            ("synthetic", n, mode)
            for n in args.synthetic_sizes
            for mode in ("permutation", "stored")
            if "synthetic" in args.datasets and mode in args.calibrations
        ]
        jobs += [
            ("real", n, mode)
            for n in args.real_sizes
            for mode in CALIBRATION_MODES
            if "real" in args.datasets and mode in args.calibrations
        ]
        fresh = [
            sizes(ds, n, mode, runs=args.size_runs, log=log, first_seed=args.first_seed)
            for ds, n, mode in jobs
        ]
        run_meta = meta(started, load)
        file = state / "calibration-sizes.json"
        kept = _saved_size_rows(file) if file.exists() else []
        done = {_size_key(row) for row in fresh}
        rows = [row for row in kept if _size_key(row) not in done]
        rows += [{**row, "meta": run_meta} for row in fresh]
        rows.sort(key=_size_order)
        file.write_text(json.dumps({"results": rows}, indent=1))
    render(args.out, state)
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
