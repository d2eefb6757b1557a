"""Seeded synthetic embeddings: anisotropic clusters of L2-normalised vectors, and the drift
scenarios the tests, the demo and the benchmarks share.

A *world* fixes cluster centres and each cluster's few strong directions (embeddings of one
topic vary along a handful of directions, not isotropically). Windows draw points from the
world with given cluster weights; scenarios then move the mean, scale the spread, add a cluster
never seen in the reference, or change the mix. Every function takes a seed or Generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embdrift._validation import check_choice, check_int, check_rng

__all__ = ["SCENARIOS", "World", "demo_weeks", "make_scenario"]

SCENARIOS = ("none", "mean_shift", "spread", "new_cluster", "mix_shift")


@dataclass(frozen=True, slots=True)
class World:
    """Cluster centres (C, d), per-cluster strong directions (C, r, d) and their scales (r,)."""

    centers: np.ndarray
    directions: np.ndarray
    scales: np.ndarray
    noise: float

    @classmethod
    def make(
        cls,
        *,
        dim: int = 384,
        n_clusters: int = 9,
        rank: int = 6,
        noise: float = 0.35,
        seed: int | np.random.Generator | None = 0,
    ) -> World:
        """A world of ``n_clusters`` (the last one is held out as the "new" cluster)."""
        rng = check_rng(seed)
        check_int(dim, name="dim", low=2)
        check_int(n_clusters, name="n_clusters", low=2)
        centers = rng.normal(size=(n_clusters, dim))
        centers /= np.linalg.norm(centers, axis=1, keepdims=True)
        directions = rng.normal(size=(n_clusters, rank, dim))
        directions /= np.linalg.norm(directions, axis=2, keepdims=True)
        scales = 0.9 * 0.7 ** np.arange(rank)
        return cls(centers=centers, directions=directions, scales=scales, noise=noise)

    @property
    def dim(self) -> int:
        return int(self.centers.shape[1])

    def sample(
        self,
        n: int,
        *,
        weights: np.ndarray,
        seed: int | np.random.Generator | None,
        spread: float = 1.0,
        shift: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` unit vectors and their cluster labels; ``spread`` scales within-cluster
        variation, ``shift`` (d,) is added before normalising."""
        rng = check_rng(seed)
        labels = rng.choice(len(weights), size=n, p=weights / weights.sum())
        coeffs = rng.normal(size=(n, self.scales.size)) * self.scales
        strong = np.einsum("nr,nrd->nd", coeffs, self.directions[labels])
        iso = rng.normal(size=(n, self.dim)) * (self.noise / np.sqrt(self.dim))
        x = self.centers[labels] + spread * (strong + iso)
        if shift is not None:
            x = x + shift
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32), labels


def make_scenario(
    name: str,
    *,
    n_reference: int = 500,
    n_current: int = 500,
    dim: int = 384,
    strength: float = 1.0,
    new_share: float = 0.05,
    seed: int | np.random.Generator | None = 0,
    world: World | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A (reference, current) pair of windows for one scenario.

    ``strength`` scales the change: the norm of the mean shift (``0.1 * strength``, along a
    fixed random unit direction), the spread factor (``1 + 0.15 * strength``), the new
    cluster's share (``new_share``, the ``strength`` unused), and the mix change
    (``0.2 * strength`` of the weight moved onto cluster 0).
    """
    check_choice(name, name="name", choices=SCENARIOS)
    rng = check_rng(seed)
    world = world if world is not None else World.make(dim=dim, seed=12345)
    base = np.ones(world.centers.shape[0])
    base[-1] = 0.0
    base /= base.sum()
    reference, _ = world.sample(n_reference, weights=base, seed=rng)
    weights, spread, shift = base, 1.0, None
    if name == "mean_shift":
        direction = np.random.default_rng(777).normal(size=world.dim)
        shift = 0.1 * strength * direction / np.linalg.norm(direction)
    elif name == "spread":
        spread = 1.0 + 0.15 * strength
    elif name == "new_cluster":
        weights = base * (1.0 - new_share)
        weights[-1] = new_share
    elif name == "mix_shift":
        moved = min(0.2 * strength, 0.9)
        weights = base * (1.0 - moved)
        weights[0] += moved
    current, _ = world.sample(n_current, weights=weights, seed=rng, spread=spread, shift=shift)
    return reference, current


def demo_weeks(
    *, n: int = 1500, dim: int = 384, seed: int | np.random.Generator | None = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Week 0 and week 4 of the post: week 4 moves the mean, widens the spread and brings a
    cluster never seen in week 0 at 4% of the traffic."""
    rng = check_rng(seed)
    world = World.make(dim=dim, seed=12345)
    base = np.ones(world.centers.shape[0])
    base[-1] = 0.0
    base /= base.sum()
    week0, _ = world.sample(n, weights=base, seed=rng)
    weights = base * 0.96
    weights[-1] = 0.04
    # Traffic leans towards the topics of cluster 0: a shift the frozen PCA can see.
    direction = world.centers[0] - world.centers[:-1].mean(axis=0)
    shift = 0.3 * direction / np.linalg.norm(direction)
    week4, _ = world.sample(n, weights=weights, seed=rng, spread=1.2, shift=shift)
    return week0, week4
