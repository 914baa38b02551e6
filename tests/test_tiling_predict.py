"""Tiling geometry and the seam-free invariant: stitched prediction == single pass."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fosgate.core.predict import BYTES_PER_WINDOW_PIXEL, auto_tile, predict_array, predict_single_pass
from fosgate.core.tiling import plan_crop_tiles, plan_windows

TILES = st.sampled_from([16, 32, 64, 128, 256])


@given(h=st.integers(1, 700), w=st.integers(1, 700), tile=TILES | st.tuples(TILES, TILES), halo=st.integers(0, 130))
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
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    wh, ww = sizes.pop()
    halo16 = -(-halo // 16) * 16
    assert wh == min(th + 2 * halo16, -(-h // 16) * 16) and ww == min(tw + 2 * halo16, -(-w // 16) * 16)
    rows = {win.row for win in plan_windows(h, w, tile, halo)}
    # the fewest windows of that size: one fewer per axis could not cover the axis with halos in between
    assert len(rows) == 1 or (len(rows) - 1) * wh - 2 * (len(rows) - 2) * halo16 < -(-h // 16) * 16


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


SMALL_TILES = st.sampled_from([16, 32, 48, 64, 128])


@given(h=st.integers(20, 300), w=st.integers(20, 300), tile=SMALL_TILES | st.tuples(SMALL_TILES, SMALL_TILES),
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


def _plan_cost(h, w, tile, halo=96):
    wins = plan_windows(h, w, tile, halo)
    return len(wins) * (wins[0].wy1 - wins[0].wy0) * (wins[0].wx1 - wins[0].wx0), wins


def test_auto_tile_fits_the_budget_and_beats_square_tiles():
    budget = 1.5e9
    for h, w, c in [(10_000, 7_000, 3), (2048, 2048, 1), (4096, 4096, 1), (20_000, 20_000, 1), (3000, 700, 1)]:
        tile = auto_tile(h, w, c, memory_budget_bytes=budget, halo=96)
        assert tile[0] % 16 == 0 and tile[1] % 16 == 0
        cost, wins = _plan_cost(h, w, tile)
        assert (wins[0].wy1 - wins[0].wy0) * (wins[0].wx1 - wins[0].wx0) * (BYTES_PER_WINDOW_PIXEL + 4 * c) <= budget
        # no square tile that fits the same budget computes fewer window pixels
        for t in range(16, 4096, 16):
            side = min(t + 192, -(-max(h, w) // 16) * 16)
            if side * side * (BYTES_PER_WINDOW_PIXEL + 4 * c) <= budget:
                assert cost <= _plan_cost(h, w, t)[0], (h, w, t)
    assert auto_tile(100, 50, 1, memory_budget_bytes=budget, halo=96) == (112, 64)  # one window
    assert auto_tile(1000, 1000, 1, memory_budget_bytes=budget, halo=96) == (1008, 1008)  # one window
    # 2048^2 does not fit: two full-length strips (1.09x the pixels), not 2 x 2 squares (1.41x)
    cost, wins = _plan_cost(2048, 2048, auto_tile(2048, 2048, 1, memory_budget_bytes=budget, halo=96))
    assert len(wins) == 2 and cost / 2048**2 < 1.1
    # nothing fits a tiny budget: the smallest windows, still a valid plan
    tile = auto_tile(2000, 2000, 1, memory_budget_bytes=1e6, halo=96)
    assert tile == (16, 16)


def test_budget_chosen_windows_are_seam_free(unet):
    """The plan ``auto_tile`` picks for a small budget (several windows) stitches to the single pass."""
    model, halo, _ = unet
    image = np.random.default_rng(5).random((420, 260, 1), dtype=np.float32)
    budget = 416 * 272 * (BYTES_PER_WINDOW_PIXEL + 4)  # fits 416 x 272 px windows, not the 432 x 272 image
    tile = auto_tile(420, 260, 1, memory_budget_bytes=budget, halo=halo)
    wins = plan_windows(420, 260, tile, halo)
    assert len(wins) > 1
    assert (wins[0].wy1 - wins[0].wy0) * (wins[0].wx1 - wins[0].wx0) <= 416 * 272
    np.testing.assert_allclose(predict_array(model, image, tile=tile, halo=halo), predict_single_pass(model, image),
                               atol=2e-5, rtol=0)


@pytest.fixture(scope="module")
def unet2():
    """The instance-aware default: two output maps (foreground, centre), same receptive field."""
    from fosgate.core.model import FosgateModel
    from fosgate.core.normalize import Normalization

    return FosgateModel.create("unet2", 1, Normalization(), seed=4)


def test_unet2_has_two_maps_and_the_reference_receptive_field(unet, unet2):
    assert unet2.outputs == ("foreground", "centre")
    assert unet2.network.output_shape[-1] == 2
    assert unet2.halo == unet[1]


@given(h=st.integers(20, 260), w=st.integers(20, 260), tile=SMALL_TILES | st.tuples(SMALL_TILES, SMALL_TILES),
       extra=st.integers(0, 40), seed=st.integers(0, 10_000))
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_stitched_multichannel_maps_equal_single_pass(unet2, h, w, tile, extra, seed):
    """Every output channel of unet2 stitches exactly, and so do the encoded maps the pipeline stores."""
    from fosgate.core.model import encode_core

    image = np.random.default_rng(seed).random((h, w, 1), dtype=np.float32)
    single = predict_single_pass(unet2.network, image)
    tiled = predict_array(unet2.network, image, tile=tile, halo=unet2.halo + extra)
    assert tiled.shape == single.shape == (h, w, 2)
    np.testing.assert_allclose(tiled, single, atol=2e-5, rtol=0)
    a, b = encode_core(tiled, 0.5), encode_core(single, 0.5)
    # encoded values can only differ where a float lies within noise of a rounding/threshold boundary
    assert np.mean(a != b) < 1e-3


def test_tta_stitched_equals_tta_single_pass(unet2):
    """Test-time augmentation (8 symmetries) keeps the invariant, also for non-square windows."""
    image = np.random.default_rng(9).random((150, 230, 1), dtype=np.float32)
    single = predict_single_pass(unet2.network, image, tta=True)
    tiled = predict_array(unet2.network, image, tile=(32, 64), halo=unet2.halo, tta=True)
    np.testing.assert_allclose(tiled, single, atol=2e-5, rtol=0)
    assert np.abs(single - predict_single_pass(unet2.network, image)).max() > 1e-4  # TTA is not a no-op


@pytest.mark.parametrize("factor", [0.5, 0.8, 1.6])
def test_rescaled_stitching_equals_single_pass_at_the_model_scale(unet2, factor):
    """A slide at another pixel size: windows read through the rescaling reader equal the same windows of
    the whole rescaled image, so stitched == single pass at the model's scale."""
    from fosgate.core.rescale import read_rescaled, resample_image

    image = np.random.default_rng(2).random((170, 210, 1), dtype=np.float32)
    whole = resample_image(image, factor)
    reader = read_rescaled(lambda y0, y1, x0, x1: image[y0:y1, x0:x1], 170, 210, factor)
    for y0, y1, x0, x1 in [(0, 16, 0, 16), (5, 40, 17, 60), (whole.shape[0] - 7, whole.shape[0], 3, whole.shape[1])]:
        np.testing.assert_array_equal(reader(y0, y1, x0, x1), whole[y0:y1, x0:x1])
    h, w = whole.shape[:2]
    out = np.zeros((h, w, 2), np.float32)

    def on_block(cy0, cy1, cx0, cx1, prob):
        out[cy0:cy1, cx0:cx1] = prob

    from fosgate.core.predict import predict_tiled

    predict_tiled(unet2.network, reader, h, w, tile=32, halo=unet2.halo, on_block=on_block)
    np.testing.assert_allclose(out, predict_single_pass(unet2.network, whole), atol=2e-5, rtol=0)
