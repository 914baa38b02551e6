"""Input normalisation: per-channel vs joint percentiles, and old models keep their rule."""

from __future__ import annotations

import numpy as np
import pytest

from fosgate.core.normalize import Normalization


def _red_stain(seed: int = 0) -> np.ndarray:
    """An RGB image of a red-only stain: cells bright in red, green/blue hold 0-2 counts of noise."""
    rng = np.random.default_rng(seed)
    img = np.zeros((200, 200, 3), np.uint8)
    img[..., 0] = rng.integers(5, 30, (200, 200))
    img[50:70, 50:70, 0] = 200
    img[..., 1:] = rng.integers(0, 3, (200, 200, 2))
    return img


def test_colour_images_share_one_range_so_empty_channels_stay_dark():
    img = _red_stain()
    lo, hi = Normalization().stats_of_array(img)  # auto: joint for 3 channels
    assert np.all(lo == lo[0]) and np.all(hi == hi[0])
    x = Normalization.apply(img, lo, hi)
    assert x[..., 1:].max() < 0.05  # green/blue noise is not stretched to full range
    assert x[60, 60, 0] > 0.9
    lo_i, hi_i = Normalization(channels="independent").stats_of_array(img)
    stretched = Normalization.apply(img, lo_i, hi_i)
    assert stretched[..., 1].max() >= 0.99  # what per-channel percentiles do to a near-empty channel


def test_grey_and_multichannel_images_stay_per_channel():
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 4000, (64, 64, 1)).astype(np.uint16)
    lo, hi = Normalization().stats_of_array(grey)
    assert lo.shape == hi.shape == (1,)
    two = np.concatenate([grey, grey // 10], axis=-1)
    lo, hi = Normalization().stats_of_array(two)
    assert hi[0] > 5 * hi[1]  # two fluorescence channels: each its own range
    lo, hi = Normalization(channels="joint").stats_of_array(two)
    assert hi[0] == hi[1]


def test_models_saved_before_the_setting_keep_independent_channels():
    old = '{"mode": "percentile", "low": 1.0, "high": 99.8, "clip_max": 1.5}'
    assert Normalization.from_json(old).channels == "independent"
    new = Normalization()
    assert Normalization.from_json(new.to_json()) == new and new.channels == "auto"
    with pytest.raises(ValueError):
        Normalization(channels="sideways")
