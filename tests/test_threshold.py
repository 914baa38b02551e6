"""Threshold calibration at training (``fosgate.core.training.calibrate_threshold``); its use at
prediction time (a request threshold of 0 means the model's own) is tested in test_end_to_end.py."""

from __future__ import annotations

import numpy as np

from fosgate.core.training import (
    DEFAULT_THRESHOLD,
    TrainConfig,
    TrainingPair,
    calibrate_threshold,
    train_unet,
)


def test_under_confident_sparse_cells_get_a_low_threshold():
    truth = np.zeros((64, 64), bool)
    truth[10:14, 10:14] = truth[40:45, 30:35] = True
    prob = np.where(truth, 0.3, 0.02) + np.random.default_rng(0).uniform(0, 0.01, truth.shape)
    out = calibrate_threshold(prob, truth)
    assert 0.02 < out["threshold"] <= 0.3 and out["val_pixel_f1_pooled_at_threshold"] == 1.0
    # at the default 0.5 the same net finds nothing at all
    assert not (prob >= DEFAULT_THRESHOLD).any()


def test_confident_prediction_keeps_the_threshold_near_one_half():
    truth = np.zeros((32, 32), bool)
    truth[8:16, 8:16] = True
    prob = np.where(truth, 0.97, 0.03)
    assert calibrate_threshold(prob, truth)["threshold"] == 0.5  # every candidate ties: nearest 0.5 wins


def test_nothing_to_calibrate_on_keeps_the_default():
    assert calibrate_threshold(np.zeros((16, 16)), np.zeros((16, 16), bool)) == {"threshold": DEFAULT_THRESHOLD}


def test_training_says_where_its_threshold_was_calibrated():
    """With a held-out split the threshold is chosen on it (val_* scores); without one it is chosen on the
    training images, flagged in-sample (train_* scores, no val_* score claimed)."""
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(4):
        img = rng.integers(0, 40, (64, 64), dtype=np.uint8)
        mask = np.zeros((64, 64), np.uint8)
        mask[20:28, 20 + i:28 + i] = 1
        img[mask > 0] = 200
        pairs.append(TrainingPair(img[..., None], mask, f"p{i}"))
    from fosgate.core.normalize import Normalization

    cfg = dict(epochs=1, tile_size=64, batch_size=4, steps_per_epoch=2, seed=0)
    _, without_val, _ = train_unet(pairs, Normalization(), TrainConfig(val_fraction=0.0, **cfg))
    assert without_val["calibrated_in_sample"] == 1.0 and "train_object_f1" in without_val
    assert not any(k.startswith("val_object") for k in without_val) and 0.0 < without_val["threshold"] < 1.0
    _, with_val, _ = train_unet(pairs, Normalization(), TrainConfig(val_fraction=0.5, **cfg))
    assert with_val["calibrated_in_sample"] == 0.0 and "val_object_f1" in with_val
    assert 0.0 < with_val["threshold"] < 1.0
