"""Seeded (reference, current) windows for the benchmark: synthetic and real text.

Synthetic windows come from :func:`embdrift.synthetic.make_scenario` with strengths pinned so
that the scenarios are as hard as the issue asks (see ``SYNTHETIC_STRENGTH``). Real-text windows
are drawn from the Debian-package MiniLM embeddings (``../shared/data``) with a group split: all
packages of one normalised source stem (``libfoo1``, ``libfoo-dev``, ``foo-doc`` ...) land in the
same pool, so near-duplicate descriptions never appear on both sides.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embdrift.synthetic import World, make_scenario

__all__ = [
    "REAL_BASE_SECTIONS",
    "REAL_MIX_TARGET",
    "REAL_NEW_SECTION",
    "REAL_NEW_SHARE",
    "REAL_SCENARIOS",
    "SYNTHETIC_SCENARIOS",
    "SYNTHETIC_STRENGTH",
    "RealText",
    "data_dir",
    "source_stem",
    "synthetic_pair",
    "synthetic_window",
]

#: ``strength`` passed to ``make_scenario`` per scenario. Pinned by the peers, not by choice:
#: scipy per-dimension KS with Bonferroni (alpha=0.05, n=500 per side, d=384) must detect the
#: mean shift in 20-30% of runs and the 5% new cluster in 15-25%. Measured with
#: ``python benchmarks/run.py --calibrate-ks`` (200 seeds each, 2026-11-26): mean_shift
#: strength 0.6 -> 0.195, 0.65 -> ~0.25, 0.7 -> 0.32, 1.0 -> 0.78; new_cluster (share 5%,
#: ``strength`` unused by make_scenario) -> 0.16. Spread and mix shift have no peer-pinned
#: target and keep make_scenario's default strength 1.0 (spread x1.15, 20% of weight moved).
SYNTHETIC_STRENGTH: dict[str, float] = {
    "none": 1.0,
    "mean_shift": 0.65,
    "spread": 1.0,
    "new_cluster": 1.0,
    "mix_shift": 1.0,
}
SYNTHETIC_SCENARIOS = tuple(SYNTHETIC_STRENGTH)

#: The fixed section mix of every real-text reference window (12.5% each).
REAL_BASE_SECTIONS = ("python", "libs", "devel", "doc", "utils", "net", "games", "science")
#: Section-mix shift: ``python`` goes from 12.5% to this share, the others shrink equally.
REAL_MIX_TARGET = 0.25
#: New-section scenario: this section (never in the reference mix) makes up REAL_NEW_SHARE.
REAL_NEW_SECTION = "admin"
REAL_NEW_SHARE = 0.05
REAL_SCENARIOS = ("none", "section_mix", "new_section")

_WORLD: World | None = None


def _world() -> World:
    global _WORLD
    if _WORLD is None:
        _WORLD = World.make(dim=384, seed=12345)
    return _WORLD


def synthetic_pair(scenario: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One seeded (reference, current) pair of ``n`` rows each, d=384."""
    return make_scenario(
        scenario,
        n_reference=n,
        n_current=n,
        dim=384,
        strength=SYNTHETIC_STRENGTH[scenario],
        seed=seed,
        world=_world(),
    )


def synthetic_window(n: int, seed: int, *, chunk: int = 5000) -> np.ndarray:
    """``n`` null rows (d=384) drawn in chunks so that generating 100k rows stays small in
    memory (``World.sample`` materialises an (n, rank, d) array)."""
    world = _world()
    rng = np.random.default_rng(seed)
    weights = np.ones(world.centers.shape[0])
    weights[-1] = 0.0
    parts = []
    for start in range(0, n, chunk):
        part, _ = world.sample(min(chunk, n - start), weights=weights, seed=rng)
        parts.append(part)
    return np.concatenate(parts)


def data_dir() -> Path:
    """``$EMBDRIFT_DATA_DIR`` or ``<repo>/../shared/data`` (as in tests/conftest.py)."""
    env = os.environ.get("EMBDRIFT_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


_SUFFIX = re.compile(r"-(dev|doc|docs|common|data|bin|tools|utils|examples|dbg)$")
_TRAIL = re.compile(r"[-.+0-9]+$")
_PREFIX = re.compile(r"^(lib|python3?-|ruby-|node-|golang-|r-cran-)")


def source_stem(package: str) -> str:
    """Normalised source stem of a package name, for the group split.

    Lower-case; strip ``lib``/``python3-``-style prefixes, then repeatedly the ``-dev``,
    ``-doc``, ``-common``, ``-data`` (and a few similar) suffixes and trailing version digits,
    so ``libfoo2.4-dev``, ``libfoo2.4``, ``foo-doc`` and ``python3-foo`` all map to ``foo``.
    """
    stem = package.lower()
    stem = _PREFIX.sub("", stem)
    while True:
        new = _TRAIL.sub("", _SUFFIX.sub("", stem))
        if new == stem or not new:
            break
        stem = new
    return stem or package.lower()


@dataclass
class RealText:
    """The real-text embeddings with section labels and source-stem groups."""

    embeddings: np.ndarray
    section: np.ndarray
    group: np.ndarray

    @classmethod
    def load(cls) -> RealText:
        path = data_dir() / "debian_packages_minilm.npz"
        with np.load(path, allow_pickle=False) as data:
            x = data["embeddings"].astype(np.float32)
            section = data["section"].astype(str)
            package = data["package"].astype(str)
        _, group = np.unique([source_stem(p) for p in package], return_inverse=True)
        return cls(embeddings=x, section=section, group=group)

    def pair(self, scenario: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """A seeded (reference, current) pair of ``n`` rows each (see :meth:`pair_rows`)."""
        ref_rows, cur_rows = self.pair_rows(scenario, n, seed)
        return self.embeddings[ref_rows], self.embeddings[cur_rows]

    def pair_rows(self, scenario: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Row indices of a seeded (reference, current) pair of ``n`` rows each.

        Each seed draws a fresh split of whole source-stem groups into a reference pool and a
        test pool (so the false-alarm rate is not conditional on one split), then draws the
        reference window from the reference pool with the base mix and the current window from
        the test pool with the scenario's mix, without replacement.
        """
        if scenario not in REAL_SCENARIOS:
            raise ValueError(f"unknown real-text scenario {scenario!r}; use {REAL_SCENARIOS}")
        rng = np.random.default_rng([seed, 31337])
        in_ref_pool = rng.random(int(self.group.max()) + 1) < 0.5
        ref_pool = in_ref_pool[self.group]
        k = len(REAL_BASE_SECTIONS)
        base = dict.fromkeys(REAL_BASE_SECTIONS, 1.0 / k)
        mix = dict(base)
        if scenario == "section_mix":
            rest = (1.0 - REAL_MIX_TARGET) / (k - 1)
            mix = {s: (REAL_MIX_TARGET if s == "python" else rest) for s in REAL_BASE_SECTIONS}
        elif scenario == "new_section":
            mix = {s: w * (1.0 - REAL_NEW_SHARE) for s, w in base.items()}
            mix[REAL_NEW_SECTION] = REAL_NEW_SHARE
        return self._draw(base, n, ref_pool, rng), self._draw(mix, n, ~ref_pool, rng)

    def _draw(
        self, mix: dict[str, float], n: int, pool: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Row indices (shuffled) of ``n`` pool rows drawn with the section mix ``mix``."""
        sections = list(mix)
        counts = rng.multinomial(n, np.array([mix[s] for s in sections]))
        rows = []
        for section, count in zip(sections, counts, strict=True):
            candidates = np.flatnonzero(pool & (self.section == section))
            if count > candidates.size:
                raise ValueError(
                    f"section {section!r} has {candidates.size} rows in the pool, {count} needed;"
                    " use a smaller window (at most 2,000 per side)"
                )
            rows.append(rng.choice(candidates, size=count, replace=False))
        return rng.permutation(np.concatenate(rows))
