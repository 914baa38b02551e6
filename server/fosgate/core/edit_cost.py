"""What correcting a proposal costs a reviewer, counted in objects as a person feels it.

A reviewer who corrects a proposed tile until it equals the truth keeps the proposed objects that
match a true object (one-to-one at IoU >= 0.5, :func:`fosgate.core.metrics.match_instances`), and for
the rest does one of three things:

- **re-draw** a proposed object that overlaps a true object it does not match (wrong outline: one
  correction, not a delete plus a draw). Unmatched proposed and true objects that overlap are paired
  one-to-one, largest IoU first;
- **delete** a proposed object that overlaps no unmatched true object (a false detection);
- **draw** (add) a true object that no proposed object matches or overlaps (a missed cell).

Invariants
- ``kept + redrawn + deleted == proposed`` and ``kept + redrawn + drawn == true``.
- ``edits = redrawn + deleted + drawn`` is 0 exactly when every object matches at the IoU threshold
  (the proposal can be accepted as it is), and a proposal equal to the truth costs 0.
- Symmetric roles: swapping proposal and truth swaps ``deleted`` and ``drawn`` and keeps the rest.
"""

from __future__ import annotations

from dataclasses import asdict, astuple, dataclass

import numpy as np

from fosgate.core.metrics import as_instances, match_instances


@dataclass(frozen=True)
class EditCost:
    """Objects kept, re-drawn, deleted and drawn to turn one proposal into the truth."""

    proposed: int
    true: int
    kept: int
    redrawn: int
    deleted: int
    drawn: int

    @property
    def edits(self) -> int:
        """Corrections a person makes: re-drawn + deleted + drawn objects."""
        return self.redrawn + self.deleted + self.drawn

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "edits": self.edits}

    def __add__(self, other: EditCost) -> EditCost:
        """Costs of several tiles add up field by field."""
        return EditCost(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


NO_COST = EditCost(0, 0, 0, 0, 0, 0)


def edit_cost(proposal: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.5) -> EditCost:
    """The corrections that turn ``proposal`` into ``truth`` (label images or binary masks of one tile;
    binary masks become 4-connected components). See the module docstring."""
    p, t = as_instances(proposal), as_instances(truth)
    m = match_instances(p, t, iou_threshold)
    n_p, n_t, kept = len(m["all_pred"]), len(m["all_true"]), len(m["true_ids"])
    free_p = np.setdiff1d(m["all_pred"], m["pred_ids"])
    free_t = np.setdiff1d(m["all_true"], m["true_ids"])
    redrawn = 0
    if free_p.size and free_t.size:
        pf, tf = p.ravel(), t.ravel()
        sel = np.isin(pf, free_p) & np.isin(tf, free_t)
        if sel.any():
            pairs, inter = np.unique(np.stack([pf[sel], tf[sel]]), axis=1, return_counts=True)
            area_p = {int(k): int(v) for k, v in zip(*np.unique(pf[np.isin(pf, free_p)], return_counts=True),
                                                     strict=True)}
            area_t = {int(k): int(v) for k, v in zip(*np.unique(tf[np.isin(tf, free_t)], return_counts=True),
                                                     strict=True)}
            ious = [(i / (area_p[int(a)] + area_t[int(b)] - i), int(a), int(b))
                    for (a, b), i in zip(pairs.T, inter, strict=True)]
            used_p: set[int] = set()
            used_t: set[int] = set()
            for _, a, b in sorted(ious, reverse=True):
                if a not in used_p and b not in used_t:
                    used_p.add(a)
                    used_t.add(b)
            redrawn = len(used_p)
    return EditCost(proposed=n_p, true=n_t, kept=kept, redrawn=redrawn, deleted=n_p - kept - redrawn,
                    drawn=n_t - kept - redrawn)
