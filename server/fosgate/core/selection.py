"""Choosing which tiles a person should label.

Strategies (``select_tiles``)
- ``balanced``: the same number from every (non-excluded) cluster; a cluster with too few tiles
  gives all it has and the rest is shared among the others (the reference paper's balanced set).
- ``proportional``: quotas in proportion to cluster sizes (largest remainder).
- ``random``: uniform over all eligible tiles.
- ``active``: balanced quotas, but inside each cluster the tiles where the current model is least
  certain come first (``uncertainty`` per tile, higher = less certain).

Invariant: returns ``min(n, eligible)`` distinct tile indices, deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STRATEGIES = ("balanced", "proportional", "random", "active")


def _quotas(sizes: dict[int, int], n: int, weights: dict[int, float]) -> dict[int, int]:
    quotas = dict.fromkeys(sizes, 0)
    remaining = n
    active = {c for c in sizes if sizes[c] > 0}
    while remaining > 0 and active:
        total_w = sum(weights[c] for c in active)
        shares = {c: remaining * weights[c] / total_w for c in active}
        floors = {c: min(int(np.floor(shares[c])), sizes[c] - quotas[c]) for c in active}
        given = sum(floors.values())
        if given == 0:  # hand out one by one by largest remainder
            for c in sorted(active, key=lambda c: (-(shares[c] - np.floor(shares[c])), c)):
                if remaining == 0:
                    break
                if quotas[c] < sizes[c]:
                    quotas[c] += 1
                    remaining -= 1
        else:
            for c, f in floors.items():
                quotas[c] += f
            remaining -= given
        active = {c for c in active if quotas[c] < sizes[c]}
    return quotas


def select_tiles(clusters: Sequence[int], n: int, strategy: str = "balanced", *, exclude: Sequence[int] = (),
                 uncertainty: np.ndarray | None = None, eligible: np.ndarray | None = None,
                 seed: int = 0) -> list[int]:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if strategy == "active" and uncertainty is None:
        raise ValueError("the active strategy needs the model's uncertainty per tile")
    clusters = np.asarray(clusters)
    ok = ~np.isin(clusters, list(exclude))
    if eligible is not None:
        ok &= eligible
    idx = np.nonzero(ok)[0]
    rng = np.random.default_rng(seed)
    n = int(min(n, len(idx)))
    if n <= 0:
        return []
    if strategy == "random":
        return sorted(rng.choice(idx, size=n, replace=False).tolist())
    by_cluster = {int(c): idx[clusters[idx] == c] for c in np.unique(clusters[idx])}
    sizes = {c: len(v) for c, v in by_cluster.items()}
    weights = {c: (float(sizes[c]) if strategy == "proportional" else 1.0) for c in sizes}
    quotas = _quotas(sizes, n, weights)
    chosen: list[int] = []
    for c, members in by_cluster.items():
        if strategy == "active":
            order = members[np.lexsort((rng.random(len(members)), -uncertainty[members]))]
        else:
            order = rng.permutation(members)
        chosen += order[:quotas[c]].tolist()
    return sorted(chosen)
