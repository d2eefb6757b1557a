"""Benchmark embdrift against the peer drift detectors in one run; writes benchmarks/RESULTS.md.

Two parts:

* **Detection** at n per side (default 500, d=384, alpha=0.05): false-alarm rate on ``none``
  and power on every other scenario, synthetic (``embdrift.synthetic``) and real text (Debian
  package descriptions, ../shared/data), with size-adjusted power (score thresholded at the 95th
  percentile of the method's own null scores) beside every raw rate.
* **Cost** of one check with its p-value at n = 1k, 5k, 20k, 100k per side (d=384): wall time
  and peak resident memory, each (method, n) in a fresh subprocess with an address-space limit
  and a timeout; a failure (out of memory, timeout) is recorded, and larger n of that method is
  then skipped and marked as such.

Run it with the peers env (``make bench`` does both)::

    bash benchmarks/setup_peers.sh
    DO_NOT_TRACK=1 .venv-peers/bin/python benchmarks/run.py

``--quick`` is a smoke run (tiny n, few seeds); ``--methods embdrift`` runs in the main .venv.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

os.environ.setdefault("DO_NOT_TRACK", "1")  # evidently calls home otherwise
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _methods as methods  # noqa: E402
import _scenarios as scenarios  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
COST_SIZES = (1_000, 5_000, 20_000, 100_000)


# ---------------------------------------------------------------------------- detection
@dataclass
class Tally:
    """Decisions and scores of one method on one scenario over seeds."""

    drifted: list[bool] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    per_metric: dict[str, list[bool]] = field(default_factory=dict)

    def add(self, outcome: methods.Outcome) -> None:
        self.drifted.append(outcome.drifted)
        self.scores.append(outcome.score)
        for name, flag in outcome.per_metric.items():
            self.per_metric.setdefault(name, []).append(flag)


def _pairs(dataset: str, real: scenarios.RealText | None):
    if dataset == "synthetic":
        return scenarios.SYNTHETIC_SCENARIOS, scenarios.synthetic_pair
    assert real is not None
    return scenarios.REAL_SCENARIOS, real.pair


def detect(
    method: str,
    dataset: str,
    *,
    n: int,
    seeds_null: int,
    seeds_power: int,
    budget: float,
    n_permutations: int | None,
    real: scenarios.RealText | None,
    log,
) -> dict[str, Tally]:
    """Run ``method`` over seeds, round-robin over the scenarios (so a time budget cuts every
    scenario at the same seed count); the null scenario runs ``seeds_null`` seeds."""
    names, pair = _pairs(dataset, real)
    check = methods.make_check(method, n_permutations=n_permutations)
    tallies = {s: Tally() for s in names}
    start = time.perf_counter()
    for seed in range(max(seeds_null, seeds_power)):
        for scenario in names:
            wanted = seeds_null if scenario == "none" else seeds_power
            if seed >= wanted:
                continue
            x, y = pair(scenario, n, 10_000 + seed)
            tallies[scenario].add(check(x, y, seed))
        if (seed + 1) % 100 == 0:
            log(f"  {method} / {dataset}: {seed + 1} seeds, {time.perf_counter() - start:.0f} s")
        if time.perf_counter() - start > budget:
            log(
                f"  {method} / {dataset}: time budget {budget:.0f} s reached after {seed + 1} seeds"
            )
            break
    log(f"  {method} / {dataset}: {time.perf_counter() - start:.0f} s")
    return tallies


def size_adjusted(null: Sequence[float], alt: Sequence[float]) -> float:
    """Share of ``alt`` scores above the 95th percentile of the method's own null scores."""
    threshold = np.quantile(np.asarray(null, dtype=float), 1.0 - methods.ALPHA)
    return float(np.mean(np.asarray(alt, dtype=float) > threshold))


# ---------------------------------------------------------------------------- cost
def _vm_hwm_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return usage.ru_utime + usage.ru_stime


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def cost_worker(method: str, n: int) -> None:
    """Child process: build two null windows of n rows, then time one check (fit + compare
    with p-value) and report JSON on stdout. VmHWM is reset after the data is built, so the
    peak is the check's (plus the resident input windows, 2 x n x 384 float32)."""
    x = scenarios.synthetic_window(n, 1)
    y = scenarios.synthetic_window(n, 2)
    check = methods.make_check(method) if not method.startswith("embdrift") else None
    report: dict[str, object] = {"method": method, "n": n}
    if method.startswith("embdrift"):
        from embdrift import Reference

        # "embdrift stored null": the null for this window size is simulated at fit, and the
        # check computes each statistic once (calibration="stored").
        stored = method == "embdrift stored null"
        fit = {"window_sizes": (n,)} if stored else {}
        check_opts = {"calibration": "stored"} if stored else {"seed": 0}
        # Warm imports and code paths outside the timing.
        Reference.fit(x[:64], seed=0, window_sizes=(64,)).compare(y[:64], calibration="stored")
        Reference.fit(x[:64], seed=0).compare(y[:64], n_permutations=49)
        reset = _reset_hwm()
        c0 = _cpu_seconds()
        t0 = time.perf_counter()
        ref = Reference.fit(x, seed=0, **fit)
        t1 = time.perf_counter()
        result = ref.compare(y, **check_opts)
        t2 = time.perf_counter()
        report.update(seconds=t2 - t0, compare_seconds=t2 - t1, p_value=result.p_value)
    else:
        assert check is not None
        small = 64
        check(x[:small], y[:small], 0)  # warm imports (torch, pandas) outside the timing
        reset = _reset_hwm()
        c0 = _cpu_seconds()
        t0 = time.perf_counter()
        outcome = check(x, y, 0)
        report.update(seconds=time.perf_counter() - t0, p_value=outcome.p_value)
    report.update(
        cpu_seconds=_cpu_seconds() - c0,
        peak_rss_mb=_vm_hwm_mb(),
        hwm_reset=reset,
        status="ok",
        load=os.getloadavg()[0],
    )
    print(json.dumps(report))


def cost_run(method: str, n: int, *, timeout: float, mem_gb: float) -> dict[str, object]:
    """Run one (method, n) cost measurement in a fresh subprocess with RLIMIT_AS and a
    timeout; failures come back as a status string."""
    limit = int(mem_gb * 1024**3)

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    cmd = [sys.executable, str(HERE / "run.py"), "--cost-worker", method, str(n)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=limits
        )
    except subprocess.TimeoutExpired:
        return {"method": method, "n": n, "status": f"timeout (> {timeout:.0f} s)"}
    elapsed = time.perf_counter() - t0
    if proc.returncode == 0 and proc.stdout.strip():
        return json.loads(proc.stdout.strip().splitlines()[-1])
    err = proc.stderr.strip().splitlines()
    tail = err[-1] if err else f"exit {proc.returncode}"
    oom = any(
        key in proc.stderr
        for key in (
            "MemoryError",
            "out of memory",
            "Unable to allocate",
            "std::bad_alloc",
            "can't allocate memory",  # torch's CPU allocator
        )
    )
    if oom or proc.returncode == -9:
        status = f"out of memory (> {mem_gb:.0f} GB address space)"
    else:
        status = f"error: {tail[:120]}"
    return {"method": method, "n": n, "status": status, "elapsed": elapsed}


# ---------------------------------------------------------------------------- report
def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in (
        "embdrift",
        "numpy",
        "scipy",
        "scikit-learn",
        "torch",
        "alibi-detect",
        "evidently",
        "dcor",
        "POT",
        "pandas",
        "threadpoolctl",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _shared_note(load: Sequence[float]) -> str:
    """A warning beside a part's load average when it exceeded the core count: other jobs
    then competed with the measurement, and wall times are inflated."""
    busy = max(load) > (os.cpu_count() or 1)
    return " (above the core count: other jobs shared this machine)" if busy else ""


def _machine() -> str:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as fh:
            kb = int(fh.readline().split()[1])
            mem = f"{kb / 1024**2:.1f} GiB"
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores, {mem} RAM"


def _blas() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    parts = []
    for info in threadpool_info():
        parts.append(
            f"{info.get('internal_api')} {info.get('version')} ({info.get('user_api')},"
            f" {info.get('num_threads')} threads, {Path(info.get('filepath', '')).name})"
        )
    return "; ".join(parts) or "none loaded"


def _rate(flags: Sequence[bool]) -> float:
    return float(np.mean(flags)) if flags else float("nan")


def _fmt(x: float) -> str:
    return "—" if x != x else f"{x:.3f}"


def detection_table(results: dict[str, dict[str, dict[str, Tally]]], *, n: int) -> list[str]:
    """Markdown rows: one per method (and per embdrift metric), columns per scenario."""
    columns: list[tuple[str, str]] = [("synthetic", s) for s in scenarios.SYNTHETIC_SCENARIOS]
    columns += [("real", s) for s in scenarios.REAL_SCENARIOS]
    head = ["method", "seeds (null / alt)"]
    for dataset, s in columns:
        label = "false alarms" if s == "none" else "power (size-adj.)"
        head.append(f"{dataset} `{s}` {label}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(name: str, get) -> str:
        cells = [name]
        seeds = []
        for dataset in ("synthetic", "real"):
            tallies = results.get(name.split(" · ")[0], {}).get(dataset)
            if tallies:
                n_null = len(tallies["none"].drifted)
                n_alt = min(len(t.drifted) for k, t in tallies.items() if k != "none")
                seeds.append(f"{dataset[:4]} {n_null}/{n_alt}")
        cells.append(", ".join(seeds) or "not run")
        for dataset, s in columns:
            tallies = results.get(name.split(" · ")[0], {}).get(dataset)
            if not tallies:
                cells.append("not run")
                continue
            flags, adj = get(tallies, s)
            if s == "none":
                cells.append(_fmt(_rate(flags)))
            else:
                cells.append(f"{_fmt(_rate(flags))} ({_fmt(adj)})")
        return "| " + " | ".join(cells) + " |"

    def top(tallies: dict[str, Tally], s: str):
        adj = size_adjusted(tallies["none"].scores, tallies[s].scores) if s != "none" else 0.0
        return tallies[s].drifted, adj

    for name in results:
        if name == "embdrift":
            lines.append(row("embdrift · verdict", top))
            for metric in methods.EMBDRIFT_METRICS:

                def one(tallies: dict[str, Tally], s: str, metric: str = metric):
                    return tallies[s].per_metric.get(metric, []), float("nan")

                lines.append(row(f"embdrift · {metric}", one))
        else:
            lines.append(row(name, top))
    lines.append("")
    lines.append(
        f"n = {n} per side, d = 384, alpha = {methods.ALPHA}. Power cells: raw rate, then in"
        " parentheses the size-adjusted power (score above the 95th percentile of the same"
        " method's scores on `none`); per-metric embdrift rows are single-metric decisions"
        " (no multiplicity correction), shown without size adjustment."
    )
    return lines


def cost_table(rows: list[dict[str, object]]) -> list[str]:
    sizes = sorted({int(r["n"]) for r in rows})  # type: ignore[call-overload]
    order = list(dict.fromkeys(str(r["method"]) for r in rows))
    head = ["method"] + [f"n = {n:,}" for n in sizes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in order:
        cells = [method]
        for n in sizes:
            found = [r for r in rows if r["method"] == method and r["n"] == n]
            if not found:
                cells.append("—")
                continue
            r = found[0]
            if r.get("status") != "ok":
                cells.append(str(r["status"]))
                continue
            text = f"{float(r['seconds']):.2f} s, {float(r['peak_rss_mb']):,.0f} MB"  # type: ignore[arg-type]
            if "compare_seconds" in r:
                text += f" (compare {float(r['compare_seconds']):.2f} s)"  # type: ignore[arg-type]
            if "cpu_seconds" in r:
                text += f"; CPU {float(r['cpu_seconds']):.2f} s"  # type: ignore[arg-type]
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "One check with its p-value on two null windows of n rows each (d = 384, float32),"
        " in a fresh subprocess per cell: wall time of the check (embdrift: `Reference.fit` +"
        " `compare` with default settings, compare alone in parentheses) and peak RSS"
        " (VmHWM, reset after the data is built, so it includes the resident input windows"
        " of 2·n·384·4 bytes), and the CPU time (user + system, all threads) of the check,"
        " which is less sensitive than wall time to other load on the machine."
        " Each method at its default permutations (alibi-detect 100;"
        f" dcor {methods.DCOR_RESAMPLES} resamples because its default 0 yields p = 1; POT"
        f" {methods.POT_PERMUTATIONS} permutations of {methods.POT_PROJECTIONS} projections;"
        " evidently's methods have no p-value)."
    )
    return lines


def _part_meta(args: argparse.Namespace, started: float, notes: list[str]) -> dict[str, object]:
    """What one part (detection or cost) records about the run that produced it."""
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "load": [round(args.load_start, 1), round(os.getloadavg()[0], 1)],
        "n": args.n,
        "permutations": args.permutations,
        "methods": list(args.methods),
        "quick": bool(args.quick),
        "commit": args.commit,
        "threads": {
            k: os.environ[k]
            for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
            if k in os.environ
        },
        "notes": notes,
    }


def _commit() -> str:
    """The repository's short commit, with ``+dirty`` when the work tree has changes."""
    try:
        out = subprocess.run(
            ["git", "-C", str(HERE), "describe", "--always", "--dirty=+dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _tallies_to_json(detection: dict[str, dict[str, dict[str, Tally]]]) -> dict[str, object]:
    return {
        method: {
            dataset: {s: vars(t) for s, t in tallies.items()} for dataset, tallies in per.items()
        }
        for method, per in detection.items()
    }


def _tallies_from_json(data: dict) -> dict[str, dict[str, dict[str, Tally]]]:
    return {
        method: {
            dataset: {s: Tally(**t) for s, t in tallies.items()} for dataset, tallies in per.items()
        }
        for method, per in data.items()
    }


def save_part(state: Path, part: str, meta: dict[str, object], data: object) -> None:
    state.mkdir(parents=True, exist_ok=True)
    tmp = state / f"{part}.json.tmp"
    tmp.write_text(json.dumps({"meta": meta, "data": data}, indent=1))
    tmp.replace(state / f"{part}.json")


def load_part(state: Path, part: str) -> tuple[dict | None, object]:
    path = state / f"{part}.json"
    if not path.exists():
        return None, None
    blob = json.loads(path.read_text())
    return blob["meta"], blob["data"]


def _embdrift_permutations(metas: list[dict]) -> str:
    """n_permutations of the detection part that ran embdrift's permutation check."""
    for meta in metas:
        if "embdrift" in meta.get("methods", []):
            perms = meta.get("permutations")
            return "compare's default (500 on the exact path)" if perms is None else str(perms)
    return "unknown"


def write_results(path: Path, state: Path) -> None:
    """Render RESULTS.md from the saved parts (``<state>/detection*.json``, ``cost.json``);
    detection parts saved under different ``--tag`` values (methods run by separate
    processes) are merged."""
    det_metas: list[dict] = []
    det_data: dict = {}
    for file in sorted(state.glob("detection*.json")):
        meta, data = load_part(state, file.stem)
        if meta is not None:
            det_metas.append(meta)
            for method, per in data.items():  # type: ignore[union-attr]
                det_data.setdefault(method, {}).update(per)
    det_meta = det_metas[0] if det_metas else None
    cost_meta, cost_data = load_part(state, "cost")
    lines = [
        "# embdrift benchmark results",
        "",
        "Generated by `benchmarks/run.py` from the raw results in"
        f" `{state.name}/`; do not edit by hand.",
        "",
        f"- Machine: {_machine()}",
        f"- BLAS: {_blas()}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in _versions().items()),
        f"- Synthetic strengths: {scenarios.SYNTHETIC_STRENGTH} (pinned by scipy KS, see"
        " `benchmarks/_scenarios.py`)",
        f"- Real text: reference mix 12.5% each of {', '.join(scenarios.REAL_BASE_SECTIONS)};"
        f" `section_mix` moves python to {scenarios.REAL_MIX_TARGET:.0%}; `new_section` adds"
        f" {scenarios.REAL_NEW_SHARE:.0%} `{scenarios.REAL_NEW_SECTION}`; a fresh group split"
        " (whole source stems per pool) for every seed",
    ]
    parts = [("Detection", meta) for meta in det_metas] + [("Cost", cost_meta)]
    for title, meta in parts:
        if meta is None:
            continue
        lines.append(
            f"- {title} part: `{meta['command']}` on {meta['date']}, {meta['minutes']} min,"
            f" at commit {meta.get('commit', 'unknown')},"
            f" thread settings {meta.get('threads') or 'default'};"
            f" load average (1 min) {meta['load'][0]} at start, {meta['load'][1]} at end, on"
            f" {os.cpu_count()} cores{_shared_note(meta['load'])}"
        )
        if meta["quick"]:
            lines.append(
                f"- {title}: QUICK smoke run (--quick): tiny n and seeds; not a measurement"
            )
        lines += [f"- {title}: {note}" for note in meta["notes"]]  # type: ignore[attr-defined]
        kept = meta.get("kept")
        while kept:
            lines.append(
                f"- {title}: rows of {', '.join(kept['methods'])} kept from `{kept.get('command')}`"
                f" on {kept.get('date')}, at commit {kept.get('commit', 'unknown')}, load"
                f" average {kept.get('load', ['?'])[0]} at start"
            )
            kept = kept.get("kept")
    if det_meta is not None and det_data:
        lines += [
            "",
            "## Detection",
            "",
            f"embdrift uses n_permutations = {_embdrift_permutations(det_metas)} here.",
            "",
        ]
        lines += detection_table(_tallies_from_json(det_data), n=int(det_meta["n"]))
    if cost_meta is not None and cost_data:
        lines += ["", "## Cost of one check", ""] + cost_table(cost_data)  # type: ignore[arg-type]
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------- main
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Benchmark embdrift against peer drift detectors; writes RESULTS.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="smoke run: tiny n, few seeds")
    p.add_argument(
        "--methods",
        nargs="+",
        default=list(methods.METHODS),
        metavar="NAME",
        help=f"subset of: {', '.join(methods.METHODS)}",
    )
    p.add_argument("--n", type=int, default=500, help="rows per side in the detection part")
    p.add_argument("--seeds-null", type=int, default=1000, help="embdrift null runs")
    p.add_argument("--seeds-power", type=int, default=100, help="embdrift runs per scenario")
    p.add_argument("--peer-seeds", type=int, default=50, help="peer runs per scenario")
    p.add_argument(
        "--peer-budget",
        type=float,
        default=200.0,
        help="seconds per peer and dataset before it stops early",
    )
    p.add_argument(
        "--permutations",
        type=int,
        default=None,
        help="embdrift n_permutations in the detection part (default: compare's own, 500 on"
        " the exact path)",
    )
    p.add_argument(
        "--datasets", nargs="+", default=["synthetic", "real"], choices=["synthetic", "real"]
    )
    p.add_argument(
        "--parts",
        nargs="*",
        default=["detection", "cost"],
        choices=["detection", "cost"],
        help="run only some parts; each saves its raw results next to --out and RESULTS.md is"
        " rendered from whatever parts are saved (so the two parts may run as two processes)",
    )
    p.add_argument(
        "--tag",
        default="all",
        help="name of this process's saved detection part (run methods in separate processes"
        " with different tags; RESULTS.md merges them)",
    )
    p.add_argument("--cost-sizes", type=int, nargs="*", default=list(COST_SIZES))
    p.add_argument("--cost-timeout", type=float, default=300.0)
    p.add_argument("--mem-gb", type=float, default=16.0, help="RLIMIT_AS per cost subprocess")
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--cost-worker", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cost_worker:
        cost_worker(args.cost_worker[0], int(args.cost_worker[1]))
        return 0
    unknown = [m for m in args.methods if m not in methods.METHODS]
    if unknown:
        print(f"unknown method(s) {unknown}; choose from {list(methods.METHODS)}", file=sys.stderr)
        return 2
    if args.quick:
        args.n = min(args.n, 100)
        args.seeds_null, args.seeds_power, args.peer_seeds = 10, 5, 5
        args.permutations = 49
        args.cost_sizes = [1_000]
        args.cost_timeout = min(args.cost_timeout, 120.0)
    started = time.perf_counter()
    args.load_start = os.getloadavg()[0]
    # Once, before this run writes RESULTS.md (which would mark the tree dirty).
    args.commit = _commit()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    notes: list[str] = []
    state = args.out.parent / f"{args.out.stem}-data"
    if "detection" in args.parts:
        real = None
        if "real" in args.datasets:
            if (scenarios.data_dir() / "debian_packages_minilm.npz").exists():
                real = scenarios.RealText.load()
            else:
                args.datasets = [d for d in args.datasets if d != "real"]
                notes.append(f"real-text data not found in {scenarios.data_dir()}: skipped")
        detection: dict[str, dict[str, dict[str, Tally]]] = {}
        for method in args.methods:
            peer = not method.startswith("embdrift")
            for dataset in args.datasets:
                log(f"detection: {method} on {dataset}")
                detection.setdefault(method, {})[dataset] = detect(
                    method,
                    dataset,
                    n=args.n,
                    seeds_null=args.peer_seeds if peer else args.seeds_null,
                    seeds_power=args.peer_seeds if peer else args.seeds_power,
                    budget=args.peer_budget if peer else float("inf"),
                    n_permutations=args.permutations,
                    real=real,
                    log=log,
                )
            meta = _part_meta(args, started, notes)
            tag = "detection" if args.tag == "all" else f"detection-{args.tag}"
            save_part(state, tag, meta, _tallies_to_json(detection))
            write_results(args.out, state)
    if "cost" in args.parts:
        # A run of some methods replaces their rows and keeps the other methods' rows of the
        # saved cost part (e.g. the peers, measured by an earlier run in .venv-peers).
        old_meta, old_rows = load_part(state, "cost")
        kept = [r for r in (old_rows or []) if r["method"] not in args.methods]  # type: ignore[union-attr]
        order = list(dict.fromkeys(str(r["method"]) for r in (old_rows or [])))  # type: ignore[union-attr]
        kept_meta = None
        kept_methods = {str(r["method"]) for r in kept}
        previous = old_meta.get("kept") if old_meta is not None else None
        if kept and isinstance(previous, dict) and kept_methods <= set(previous["methods"]):
            # The saved run kept these rows itself: their source is the run it names.
            kept_meta = previous
        elif kept and old_meta is not None:
            kept_meta = {
                "methods": list(dict.fromkeys(str(r["method"]) for r in kept)),
                **{k: old_meta[k] for k in ("command", "date", "commit", "load") if k in old_meta},
                **({"kept": old_meta["kept"]} if "kept" in old_meta else {}),
            }

        def _merged(rows: list[dict[str, object]]) -> list[dict[str, object]]:
            position = {m: i for i, m in enumerate(order)}
            return sorted(kept + rows, key=lambda r: position.get(str(r["method"]), len(order)))

        def _cost_meta() -> dict[str, object]:
            meta = _part_meta(args, started, [])
            if kept_meta is not None:
                meta["kept"] = kept_meta
            return meta

        cost: list[dict[str, object]] = []
        for method in args.methods:
            failed = None
            for n in args.cost_sizes:
                if failed is not None:
                    cost.append(
                        {"method": method, "n": n, "status": f"skipped (failed at n = {failed:,})"}
                    )
                    continue
                log(f"cost: {method} at n = {n:,}")
                row = cost_run(method, n, timeout=args.cost_timeout, mem_gb=args.mem_gb)
                log(f"  {row}")
                cost.append(row)
                if row.get("status") != "ok":
                    failed = n
                save_part(state, "cost", _cost_meta(), _merged(cost))
                write_results(args.out, state)
    write_results(args.out, state)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
