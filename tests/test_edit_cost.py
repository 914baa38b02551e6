"""The reviewer's edit cost (fosgate.core.edit_cost) on hand-made tiles whose corrections are known."""

from __future__ import annotations

import numpy as np
import pytest

from fosgate.core.edit_cost import NO_COST, EditCost, edit_cost


def disc(shape, cy, cx, r, value=1, out=None):
    out = np.zeros(shape, np.int32) if out is None else out
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    out[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = value
    return out


def tile(*discs, shape=(96, 96)):
    out = np.zeros(shape, np.int32)
    for i, (cy, cx, r) in enumerate(discs, start=1):
        disc(shape, cy, cx, r, i, out)
    return out


def test_a_perfect_proposal_costs_nothing():
    t = tile((20, 20, 6), (60, 60, 8))
    c = edit_cost(t, t)
    assert c == EditCost(proposed=2, true=2, kept=2, redrawn=0, deleted=0, drawn=0) and c.edits == 0


def test_each_kind_of_correction_is_counted_once():
    truth = tile((20, 20, 6), (60, 60, 8), (20, 70, 6))
    proposal = tile((20, 20, 6),      # kept (same object)
                    (60, 66, 8),      # overlaps truth 2 at IoU < 0.5: re-drawn
                    (80, 15, 5))      # overlaps nothing: deleted; truth 3 is missed: drawn
    c = edit_cost(proposal, truth)
    assert (c.kept, c.redrawn, c.deleted, c.drawn) == (1, 1, 1, 1) and c.edits == 3
    assert c.kept + c.redrawn + c.deleted == c.proposed == 3 and c.kept + c.redrawn + c.drawn == c.true == 3


def test_swapping_roles_swaps_deleted_and_drawn():
    truth = tile((20, 20, 6), (60, 60, 8))
    proposal = tile((20, 20, 6), (60, 66, 8), (80, 15, 5), (85, 80, 4))
    a, b = edit_cost(proposal, truth), edit_cost(truth, proposal)
    assert (a.deleted, a.drawn, a.redrawn, a.kept) == (b.drawn, b.deleted, b.redrawn, b.kept)


def test_merged_cells_are_one_redraw_and_draws():
    """Three touching true cells proposed as one blob (IoU 1/3 with each): the blob is re-drawn as one of
    them and the other two are drawn; two merged cells (IoU 1/2) keep the blob as one of them."""
    truth = tile((40, 20, 9), (40, 38, 9), (40, 56, 9))
    c = edit_cost((truth > 0).astype(np.int32), truth)
    assert (c.proposed, c.true, c.kept, c.redrawn, c.drawn, c.deleted) == (1, 3, 0, 1, 2, 0)
    two = tile((40, 20, 9), (40, 38, 9))
    c = edit_cost((two > 0).astype(np.int32), two)
    assert (c.kept, c.redrawn, c.drawn) == (1, 0, 1)


def test_empty_tiles_and_sums():
    empty = np.zeros((32, 32), np.int32)
    assert edit_cost(empty, empty) == NO_COST
    t = tile((16, 16, 5), shape=(32, 32))
    assert edit_cost(empty, t).drawn == 1 and edit_cost(t, empty).deleted == 1
    total = edit_cost(empty, t) + edit_cost(t, empty) + edit_cost(t, t)
    assert total == EditCost(proposed=2, true=2, kept=1, redrawn=0, deleted=1, drawn=1)
    assert total.to_dict()["edits"] == 2


@pytest.mark.parametrize("seed", range(5))
def test_invariants_on_random_tiles(seed):
    rng = np.random.default_rng(seed)
    def rand():
        return tile(*[(int(rng.integers(8, 88)), int(rng.integers(8, 88)), int(rng.integers(3, 9)))
                      for _ in range(int(rng.integers(0, 8)))])
    p, t = rand(), rand()
    c = edit_cost(p, t)
    n_p, n_t = len(np.unique(p)) - 1, len(np.unique(t)) - 1
    assert c.proposed == n_p and c.true == n_t
    assert min(c.kept, c.redrawn, c.deleted, c.drawn) >= 0
    assert (c.edits == 0) == (c.kept == n_p == n_t)
