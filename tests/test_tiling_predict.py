"""Tiling geometry and the seam-free invariant: stitched prediction == single pass."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fosgate.core.predict import BYTES_PER_WINDOW_PIXEL, auto_tile_size, predict_array, predict_single_pass
from fosgate.core.tiling import plan_crop_tiles, plan_windows


@given(h=st.integers(1, 700), w=st.integers(1, 700), tile=st.sampled_from([16, 32, 64, 128, 256]),
       halo=st.integers(0, 130))
@settings(max_examples=200, deadline=None)
def test_windows_cover_every_pixel_once(h, w, tile, halo):
    cover = np.zeros((h, w), np.int32)
    sizes = set()
    for win in plan_windows(h, w, tile, halo):
        cover[win.cy0:win.cy1, win.cx0:win.cx1] += 1
        sizes.add((win.wy1 - win.wy0, win.wx1 - win.wx0))
        assert win.wy0 % 16 == 0 and win.wx0 % 16 == 0, "windows must start on the pooling grid"
        assert win.wy0 <= win.cy0 and win.cy1 <= win.wy1 and win.wx0 <= win.cx0 and win.cx1 <= win.wx1
        # at least `halo` of context or the true image border on every side
        assert win.cy0 - win.wy0 >= halo or win.wy0 == 0
        assert win.cx0 - win.wx0 >= halo or win.wx0 == 0
        assert win.wy1 - win.cy1 >= halo or win.wy1 >= h
        assert win.wx1 - win.cx1 >= halo or win.wx1 >= w
    assert (cover == 1).all()
    assert len(sizes) == 1, "all windows have one size (one compiled graph)"


@given(h=st.integers(1, 600), w=st.integers(1, 600), tile=st.integers(9, 300), margin=st.integers(0, 4))
@settings(max_examples=200, deadline=None)
def test_crop_tiles_cover_everything_including_last_partial_row(h, w, tile, margin):
    cover = np.zeros((h, w), np.int32)
    for t in plan_crop_tiles(h, w, tile, margin):
        assert t.y >= 0 and t.x >= 0 and t.y + t.height <= h and t.x + t.width <= w
        assert t.height == min(tile, h) and t.width == min(tile, w)
        assert t.y <= t.core_y and t.core_y + t.core_height <= t.y + t.height
        cover[t.core_y:t.core_y + t.core_height, t.core_x:t.core_x + t.core_width] += 1
    assert (cover == 1).all()


def test_reference_recipe_128_with_4px_margin_steps_by_120():
    tiles = plan_crop_tiles(1000, 1000, 128, 4)
    xs = sorted({t.x for t in tiles})
    assert xs[:3] == [0, 120, 240] and xs[-1] == 1000 - 128


@pytest.fixture(scope="module")
def unet():
    from fosgate.core.unet import build_unet, receptive_field_radius, required_halo

    model = build_unet(1, seed=3)
    # give the random net some structure so that errors would show
    radius = receptive_field_radius(model)
    return model, required_halo(radius), radius


def test_reference_unet_shape_and_receptive_field(unet):
    model, halo, radius = unet
    assert model.count_params() == 1_940_817  # 16-32-64-128-256, 1 input channel
    assert 60 < radius <= halo <= 112


@given(h=st.integers(20, 300), w=st.integers(20, 300), tile=st.sampled_from([16, 32, 48, 64, 128]),
       extra=st.integers(0, 40), seed=st.integers(0, 10_000))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_stitched_equals_single_pass(unet, h, w, tile, extra, seed):
    model, halo, _ = unet
    image = np.random.default_rng(seed).random((h, w, 1), dtype=np.float32)
    single = predict_single_pass(model, image)
    tiled = predict_array(model, image, tile=tile, halo=halo + extra)
    assert tiled.shape == (h, w)
    np.testing.assert_allclose(tiled, single, atol=2e-5, rtol=0)
    t = float(np.median(single))
    confident = np.abs(single - t) > 1e-4
    assert ((tiled >= t) == (single >= t))[confident].all()


def test_too_small_halo_shows_seams(unet):
    """The invariant is not vacuous: without the halo the stitched map differs."""
    model, _, _ = unet
    image = np.random.default_rng(0).random((200, 200, 1), dtype=np.float32)
    single = predict_single_pass(model, image)
    tiled = predict_array(model, image, tile=32, halo=0)
    assert np.abs(tiled - single).max() > 1e-3


def test_auto_tile_size_is_grid_aligned_and_bounded():
    t = auto_tile_size(10_000, 7_000, 3, memory_budget_bytes=1.5e9, halo=96)
    assert t % 16 == 0 and 256 <= t and (t + 192) ** 2 * (BYTES_PER_WINDOW_PIXEL + 12) <= 1.5e9
    assert auto_tile_size(100, 50, 1, memory_budget_bytes=1.5e9, halo=96) == 112  # one window
    assert auto_tile_size(1000, 1000, 1, memory_budget_bytes=1.5e9, halo=96) == 1008  # one window
    assert auto_tile_size(2048, 2048, 1, memory_budget_bytes=1.5e9, halo=96) == 1024  # 2 x 2, evenly spread
    assert auto_tile_size(4096, 4096, 1, memory_budget_bytes=1.5e9, halo=96) == 1376  # 3 x 3, evenly spread
