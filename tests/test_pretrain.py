"""Masked-image-modelling pretraining (issue: fewer labels for a new lab), on a small synthetic slide."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from fosgate.core.normalize import Normalization
from fosgate.core.pretrain import PretrainConfig, patch_masks, pretrain, sample_tiles
from fosgate.core.slides import open_slide
from fosgate.core.synthetic import generate_cfos
from fosgate.core.unet import build_unet
from fosgate.errors import InvalidInput


def test_patch_masks_hide_the_asked_fraction_and_prefer_bright_patches():
    rng = np.random.default_rng(0)
    tiles = np.zeros((200, 64, 64, 1), np.float32)
    tiles[:, :32] = 1.0  # the top half is bright
    for masking in ("random", "intensity"):
        hidden = patch_masks(tiles, 16, 0.25, masking, rng)
        assert hidden.shape == (200, 64, 64)
        assert np.allclose(hidden.mean(axis=(1, 2)), 0.25)  # exactly 4 of 16 patches per tile
        top = hidden[:, :32].mean() / hidden.mean()
        if masking == "random":
            assert 0.85 < top < 1.15
        else:
            assert top > 1.2  # bright patches are hidden more often


@pytest.mark.parametrize("bad", [dict(mask_ratio=float("nan")), dict(mask_ratio=1.0), dict(patch_size=24),
                                 dict(masking="zebra"), dict(learning_rate=-1.0), dict(epochs=0),
                                 dict(tile_size=100)])
def test_config_bounds(bad):
    with pytest.raises(InvalidInput):
        PretrainConfig(**bad).validate()


def test_sample_tiles_reads_normalised_windows(tmp_path):
    image, _, _ = generate_cfos(300, 200, seed=2)
    tifffile.imwrite(tmp_path / "s.tif", image)
    with open_slide(tmp_path / "s.tif") as slide:
        tiles = sample_tiles([slide], Normalization(), n=12, tile=256, seed=0)  # taller than the slide: padded
    assert tiles.shape == (12, 256, 256, 1) and tiles.dtype == np.float32
    assert np.all(tiles[:, :, 200:] == 0) and tiles[:, :200, :200].max() > 0.5


def test_pretraining_learns_to_fill_hidden_patches_and_keeps_the_network(tmp_path):
    # a slide whose hidden patches are predictable from their context (smooth pattern, mild noise)
    yy, xx = np.mgrid[:512, :512]
    noise = np.random.default_rng(0).normal(0, 4, (512, 512))
    image = np.clip(120 + 70 * np.sin(xx / 7.0) * np.cos(yy / 11.0) + noise, 0, 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "s.tif", image)
    with open_slide(tmp_path / "s.tif") as slide:
        tiles = sample_tiles([slide], Normalization(), n=96, tile=64, seed=0)
    net = build_unet(1, filters=(8, 16, 32), seed=0)
    names = [layer.name for layer in net.layers]
    head_before = net.get_layer("probability").get_weights()[0].copy()
    first_before = net.get_layer("down0_a").get_weights()[0].copy()
    config = PretrainConfig(epochs=6, steps_per_epoch=20, batch_size=8, tile_size=64, patch_size=8, tiles=96,
                            learning_rate=3e-3)
    seen = []
    result = pretrain(net, tiles, config, on_epoch=lambda e, n, v: seen.append((e, n, v)))
    assert [e for e, _, _ in seen] == list(range(1, 7))
    # the same network, other weights: architecture and segmentation head unchanged, shared layers trained
    assert [layer.name for layer in result.net.layers] == names
    assert np.array_equal(result.net.get_layer("probability").get_weights()[0], head_before)
    assert not np.allclose(result.net.get_layer("down0_a").get_weights()[0], first_before)
    assert result.history["val_loss"][-1] < result.history["val_loss"][0]
    # hidden patches are filled far better than by the mean of each tile's visible pixels
    t = tiles[:32]
    hidden = patch_masks(t, 8, 0.5, "intensity", np.random.default_rng(5))
    pred = result.reconstruction.predict(np.where(hidden[..., None], 0.0, t), verbose=0)
    model_mse = float(((pred - t)[hidden] ** 2).mean())
    baseline = float(np.mean([((t[i][hidden[i]] - t[i][~hidden[i]].mean()) ** 2).mean() for i in range(len(t))]))
    assert model_mse < 0.5 * baseline, (model_mse, baseline)


def test_allocate_tiles_follows_the_areas_and_sums_to_n():
    from fosgate.core.pretrain import allocate_tiles

    counts = allocate_tiles([100.0, 300.0, 0.5], 4000, seed=1)
    assert sum(counts) == 4000 and len(counts) == 3
    assert 0.2 < counts[0] / 4000 < 0.3 and 0.7 < counts[1] / 4000 < 0.8 and counts[2] < 20
    assert allocate_tiles([1.0, 2.0], 50, seed=7) == allocate_tiles([1.0, 2.0], 50, seed=7)
    with pytest.raises(InvalidInput):
        allocate_tiles([], 10)


def test_slide_at_scale_reads_what_the_whole_rescaled_image_holds(tmp_path):
    """A window read through SlideAtScale equals that window of the whole image resampled at once (the
    pointwise rule prediction uses), and the view reports the model-scale size."""
    from fosgate.core.pretrain import SlideAtScale
    from fosgate.core.rescale import resample_image

    image, _, _ = generate_cfos(300, 260, seed=4)
    tifffile.imwrite(tmp_path / "s.tif", image)
    with open_slide(tmp_path / "s.tif") as slide:
        for f in (0.5, 1.6):
            view = SlideAtScale(slide, f, pixel_size_um=0.65)
            whole = resample_image(image[..., None], f)
            assert (view.info.height, view.info.width) == whole.shape[:2] and view.info.pixel_size_um == 0.65
            np.testing.assert_allclose(view.read(20, 84, 30, 94), whole[20:84, 30:94], atol=1e-3)
            tiles = sample_tiles([view], Normalization(), n=4, tile=64, seed=0, stats=[Normalization().stats(slide)])
            assert tiles.shape == (4, 64, 64, 1) and tiles.max() > 0.5
