"""FosgateModel: save/load (format 2 and the old format 1), seeded watershed on the stitched maps,
calibrated post-processing, pixel size, whole-slide prediction through the model object."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import tifffile

from fosgate.core.instances import label_mask
from fosgate.core.model import FosgateModel, PostProcess, PredictOptions, encode_core
from fosgate.core.normalize import Normalization


@pytest.fixture(scope="module")
def unet2():
    return FosgateModel.create("unet2", 1, Normalization(), seed=4, pixel_size_um=0.5)


def test_old_format_model_dir_loads_as_reference(tmp_path):
    """A model directory written before FosgateModel (modelio.ModelMeta, no arch) keeps working."""
    from fosgate.core.modelio import ModelMeta, save_model
    from fosgate.core.unet import build_unet

    net = build_unet(1, seed=0)
    meta = ModelMeta("md_old", "old", 3, 0.0, 1, Normalization().to_json(), 94, 128, metrics={"pixel_f1": 0.8},
                     threshold=0.35)
    save_model(net, meta, tmp_path / "old")
    raw = json.loads((tmp_path / "old" / "meta.json").read_text())
    assert "arch" not in raw and "format_version" not in raw
    m = FosgateModel.load(tmp_path / "old")
    assert m.arch == "reference" and m.outputs == ("foreground",)
    assert m.post == PostProcess(threshold=0.35, min_size_px=10)
    assert m.pixel_size_um == 0.0 and m.halo == 96 and m.normalization == Normalization()
    x = np.random.default_rng(0).random((40, 50, 1), np.float32)
    np.testing.assert_array_equal(m.network.predict_on_batch(np.pad(x, ((0, 8), (0, 14), (0, 0)))[None]),
                                  net.predict_on_batch(np.pad(x, ((0, 8), (0, 14), (0, 0)))[None]))


def test_save_load_round_trip(unet2, tmp_path):
    m = unet2.with_post(threshold=0.42, seed_threshold=0.61, min_size_px=17)
    m.model_id, m.name, m.metrics = "md_x", "x", {"val_object_f1": 0.9}
    m.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    assert meta["format_version"] == 2 and meta["arch"] == "unet2" and meta["outputs"] == ["foreground", "centre"]
    assert meta["threshold"] == 0.42 and meta["halo"] == 96
    back = FosgateModel.load(tmp_path / "m")
    assert back.post == m.post and back.arch == "unet2" and back.pixel_size_um == 0.5
    assert back.min_area_um2 == pytest.approx(17 * 0.25)
    assert not (tmp_path / "m.part").exists()


def _two_touching_discs(shift=18, r=11):
    h, w = 48, 64
    yy, xx = np.mgrid[:h, :w]
    a = (yy - 24) ** 2 + (xx - 20) ** 2 <= r * r
    b = (yy - 24) ** 2 + (xx - 20 - shift) ** 2 <= r * r
    truth = np.zeros((h, w), np.int32)
    truth[a] = 1
    truth[b & ~a] = 2
    return truth


def test_seeded_watershed_splits_touching_cells_and_keeps_single_ones():
    from fosgate.core.training import centre_target, training_target

    truth = _two_touching_discs()
    maps = np.stack([(truth > 0).astype(np.float32), centre_target(truth)], -1)
    enc = encode_core(maps, 0.5)
    labels = np.zeros(truth.shape, np.uint32)
    objs = label_mask(enc[..., 0], labels, min_size=5, centre=enc[..., 1], seed_threshold=0.5, centre_scale=255)
    assert len(objs) == 2 and len(np.unique(labels)) == 3
    # each piece is one true cell
    for i in (1, 2):
        assert len(np.unique(truth[labels == i])) == 1
    # without the centre map the two discs are one component
    labels1 = np.zeros(truth.shape, np.uint32)
    assert len(label_mask(enc[..., 0], labels1, min_size=5)) == 1
    # a single cell (one seed) is never cut
    single = (truth == 1).astype(np.int32)
    enc1 = encode_core(np.stack([single.astype(np.float32), centre_target(single)], -1), 0.5)
    labels2 = np.zeros(truth.shape, np.uint32)
    assert len(label_mask(enc1[..., 0], labels2, centre=enc1[..., 1], centre_scale=255)) == 1
    assert training_target(truth).sum() < (truth > 0).sum()  # the touching line is background in the target


def test_seeded_split_band_by_band_equals_whole_image():
    from fosgate.core.training import centre_target

    rng = np.random.default_rng(3)
    truth = np.zeros((300, 200), np.int32)
    yy, xx = np.mgrid[:300, :200]
    for k in range(1, 61):
        cy, cx, r = rng.integers(10, 290), rng.integers(10, 190), rng.integers(5, 10)
        truth[((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (truth == 0)] = k
    maps = np.stack([(truth > 0).astype(np.float32), centre_target(truth)], -1)
    enc = encode_core(maps, 0.5)
    whole = np.zeros(truth.shape, np.uint32)
    banded = np.zeros(truth.shape, np.uint32)
    a = label_mask(enc[..., 0], whole, min_size=5, centre=enc[..., 1], centre_scale=255)
    b = label_mask(enc[..., 0], banded, min_size=5, centre=enc[..., 1], centre_scale=255, band=64)
    assert [o.area for o in a] == [o.area for o in b]
    np.testing.assert_array_equal(whole, banded)


def test_calibration_picks_parameters_that_raise_object_f1():
    """Maps whose foreground is under-confident (0.3) and whose cells touch: the defaults find nothing;
    the calibrated threshold finds both cells."""
    from fosgate.core.training import calibrate_postprocess, centre_target

    truth = _two_touching_discs()
    maps = np.stack([np.where(truth > 0, 0.3, 0.02).astype(np.float32), centre_target(truth)], -1)
    post, scores = calibrate_postprocess([maps], [truth], PostProcess(), arch="unet2")
    assert scores["val_object_f1_default_post"] == 0.0
    assert scores["val_object_f1"] == 1.0 and post.threshold < 0.3


def test_calibration_chooses_the_distance_split_when_the_centre_map_cannot_split():
    """unet2 maps whose centre map is one flat plateau over two touching cells (no seed level separates
    them): calibration switches to the distance-transform split, which does; with a good centre map it
    keeps the seeds (ties keep the current rule)."""
    from fosgate.core.training import calibrate_postprocess, centre_target

    truth = _two_touching_discs()
    flat = np.stack([(truth > 0).astype(np.float32), (truth > 0).astype(np.float32) * 0.9], -1)
    post, scores = calibrate_postprocess([flat], [truth], PostProcess(), arch="unet2")
    assert scores["val_object_f1_default_post"] < 1.0 and post.split_touching and scores["val_object_f1"] == 1.0
    good = np.stack([(truth > 0).astype(np.float32), centre_target(truth)], -1)
    post, _ = calibrate_postprocess([good], [truth], PostProcess(), arch="unet2")
    assert not post.split_touching


def test_validation_ties_are_broken_on_the_training_images():
    """A validation image that every split rule gets right (F1 1.0 with the seeds and with the distance
    split) cannot choose; training images whose centre map is flat over two touching cells can: the tie
    goes to the distance split, which splits them. Without training images the tie keeps the seeds."""
    from fosgate.core.training import calibrate_postprocess, centre_target

    truth = _two_touching_discs()
    good = np.stack([(truth > 0).astype(np.float32), centre_target(truth)], -1)
    flat = np.stack([(truth > 0).astype(np.float32), (truth > 0).astype(np.float32) * 0.9], -1)
    kept, _ = calibrate_postprocess([good], [truth], PostProcess(), arch="unet2")
    assert not kept.split_touching
    post, scores = calibrate_postprocess([good], [truth], PostProcess(), arch="unet2",
                                         tie_maps=[flat], tie_truths=[truth])
    assert post.split_touching and scores["val_object_f1"] == 1.0
    seeds_only, _ = calibrate_postprocess([flat], [truth], PostProcess(), arch="unet2",
                                          tie_maps=[good], tie_truths=[truth])
    assert seeds_only.split_touching  # the validation difference is never overridden by the tie images


def test_post_processing_describes_its_split_rule():
    assert "seed level 0.3" in PostProcess(seed_threshold=0.3).describe("unet2")
    assert "distance transform" in PostProcess(split_touching=True).describe("unet2")
    assert "no split" in PostProcess().describe("reference")


def test_min_size_is_capped_by_the_smallest_labelled_objects():
    """Validation images of large cells whose maps also hold small false blobs: uncapped, calibration
    deletes the blobs with a min size that would erase every small cell of the other labelled images;
    with the cap from all labels (their 5th-percentile area) it may not."""
    from fosgate.core.training import calibrate_postprocess, centre_target, min_size_cap

    truth = _two_touching_discs(shift=40, r=9)  # two separate discs of ~250 px
    fg = np.where(truth > 0, 0.9, 0.02).astype(np.float32)
    centre = centre_target(truth)
    for y, x in ((5, 5), (5, 58), (42, 30)):  # three 3x3 false blobs, each with its own seed
        fg[y - 1:y + 2, x - 1:x + 2] = 0.9
        centre[y - 1:y + 2, x - 1:x + 2] = 1.0
    maps = np.stack([fg, centre], -1)
    post, _ = calibrate_postprocess([maps], [truth], PostProcess(min_size_px=1), arch="unet2")
    assert post.min_size_px > 9  # the blobs go, and nothing on these images says small cells exist

    small = np.zeros((40, 40), np.int32)
    for i, (y, x) in enumerate(((5, 5), (5, 20), (20, 5), (20, 20), (30, 30)), start=1):
        small[y:y + 2, x:x + 2] = i  # 4-px cells in another labelled image
    cap = min_size_cap([truth, small])
    assert cap == int(np.percentile([4] * 5 + [int((truth == 1).sum()), int((truth == 2).sum())], 5)) == 4
    capped, _ = calibrate_postprocess([maps], [truth], PostProcess(min_size_px=1), arch="unet2", size_cap=cap)
    assert capped.min_size_px <= cap < post.min_size_px
    assert min_size_cap([np.zeros((8, 8), np.int32)]) is None


def test_predict_instances_and_slide_agree_and_respect_the_pixel_size(unet2, tmp_path):
    """In-memory and whole-slide prediction give the same instances; a slide at twice the model's pixel
    size is predicted at the model's scale and its outputs come back at the slide's own resolution."""
    from fosgate.core.slides import open_slide
    from fosgate.core.synthetic import generate_cfos

    image, _, _ = generate_cfos(400, 360, seed=1)
    model = unet2.with_post(threshold=0.5, min_size_px=4)
    tifffile.imwrite(tmp_path / "s.tif", image)
    mem = model.predict_instances(image)  # pixel size unknown: no resampling
    with open_slide(tmp_path / "s.tif") as slide:
        out = model.predict_slide(slide, tmp_path / "o", "s", PredictOptions(tile=32))
    assert out.factor == 1.0 and out.windows > 1
    disk = tifffile.imread(out.paths["labels"])
    np.testing.assert_array_equal(disk > 0, mem > 0)
    assert out.count == len(np.unique(mem)) - 1
    with open_slide(tmp_path / "s.tif") as slide:
        out2 = model.predict_slide(slide, tmp_path / "o2", "s", PredictOptions(pixel_size_um=1.0, min_area_um2=2.0))
    assert out2.factor == pytest.approx(2.0) and out2.post.min_size_px == 2
    lab2 = tifffile.imread(out2.paths["labels"])
    assert lab2.shape == image.shape[:2]
    mem2 = model.predict_instances(image, pixel_size_um=1.0, min_area_um2=2.0)
    np.testing.assert_array_equal(lab2 > 0, mem2 > 0)


def test_train_model_is_the_library_entry_point():
    """A tiny training: fit with callbacks, object-F1 validation, calibrated post-processing, history."""
    from fosgate.core.synthetic import generate_cfos
    from fosgate.core.training import TrainConfig, TrainingPair, epoch_selection_key, train_model

    image, truth, _ = generate_cfos(256, 384, seed=2)
    pairs = [TrainingPair(image[:, i * 128:(i + 1) * 128], truth[:, i * 128:(i + 1) * 128], f"p{i}",
                          pixel_size_um=0.8) for i in range(3)]
    epochs = []
    model = train_model(pairs, TrainConfig(epochs=2, tile_size=64, batch_size=4, steps_per_epoch=2, val_fraction=0.34),
                        on_epoch=epochs.append, name="tiny")
    assert model.arch == "unet2" and model.pixel_size_um == 0.8 and model.name == "tiny"
    assert [e.epoch for e in epochs] == [1, 2] and len(model.history["object_f1"]) == 2
    assert model.metrics["calibrated"] == 1.0 and 1 <= model.metrics["best_epoch"] <= 2
    assert model.metrics["val_object_f1"] >= model.metrics["val_object_f1_default_post"]
    h = model.history  # the kept epoch is the first best by the selection key
    keys = [epoch_selection_key(f, v) for f, v in zip(h["object_f1"], h["val_loss"], strict=True)]
    assert model.metrics["best_epoch"] == keys.index(max(keys)) + 1
    labels = model.predict_instances(image[:, :128])
    assert labels.shape == (256, 128) and labels.dtype == np.uint32


def test_few_large_images_each_give_a_validation_band_and_many_are_held_out_whole():
    """Up to BAND_SPLIT_MAX_IMAGES images that are each tall enough: the bottom val_fraction of every one
    is validation (each stain is seen by validation), the rest of each is training; many images, or one
    too small for a band, are held out whole; no pixel is in both sets."""
    from fosgate.core.training import BAND_SPLIT_MAX_IMAGES, _Prepared, split_pairs

    def prepared(h, k):
        inst = np.full((h, 96), k + 1, np.int32)
        return _Prepared(np.full((h, 96, 1), k, np.float32), np.ones((h, 96, 1), np.float32), inst)

    few = [prepared(400, k) for k in range(3)]
    train, val = split_pairs(few, 0.2, 64, seed=0)
    assert [v.y.shape[0] for v in val] == [80, 80, 80] and [t.y.shape[0] for t in train] == [320, 320, 320]
    assert sorted(int(v.x[0, 0, 0]) for v in val) == [0, 1, 2]  # a band of every image
    assert all(np.array_equal(p.inst, np.concatenate([t.inst, v.inst]))
               for p, t, v in zip(few, train, val, strict=True))
    many = [prepared(400, k) for k in range(BAND_SPLIT_MAX_IMAGES + 1)]
    train, val = split_pairs(many, 0.2, 64, seed=0)
    assert len(val) == 2 and len(train) == len(many) - 2 and all(v.y.shape[0] == 400 for v in val + train)
    mixed = few + [prepared(100, 3)]  # 20 rows of 100 hold no 64-px tile: whole images
    train, val = split_pairs(mixed, 0.2, 64, seed=0)
    assert len(val) == 1 and len(train) == 3 and {p.y.shape[0] for p in train + val} <= {100, 400}
    assert split_pairs(few, 0.0, 64, seed=0) == (few, [])


def test_a_set_without_validation_is_calibrated_on_its_training_images():
    """val_fraction 0 (e.g. one small image): the post-processing is still chosen for object F1, on the
    training images, flagged as in-sample, with its scores stored as train_*, never as validation scores;
    the chosen post-processing scores at least the default on those images."""
    from fosgate.core.synthetic import generate_cfos
    from fosgate.core.training import (
        TrainConfig,
        TrainingPair,
        _Prepared,
        in_sample_calibration_set,
        train_model,
    )

    image, truth, _ = generate_cfos(128, 128, seed=3)
    model = train_model([TrainingPair(image, truth, "one")],
                        TrainConfig(epochs=1, tile_size=64, batch_size=4, steps_per_epoch=2, val_fraction=0.0))
    m = model.metrics
    assert m["calibrated"] == 1.0 and m["calibrated_in_sample"] == 1.0 and m["val_images"] == 0.0
    assert "val_object_f1" not in m and m["train_object_f1"] >= m["train_object_f1_default_post"]
    big = [_Prepared(np.zeros((1000, 1000, 1)), np.zeros((1000, 1000, 1)), np.zeros((1000, 1000), np.int32),
                     np.zeros((0, 2), int)) for _ in range(5)]  # up to 4 Mpx, never empty
    assert len(in_sample_calibration_set(big)) == 4 and len(in_sample_calibration_set(big, max_px=10)) == 1


def test_fine_tuning_with_a_frozen_encoder_changes_only_the_decoder():
    """TrainConfig(freeze="encoder") fine-tunes a base with its contracting path fixed: the down/bottom
    convolutions keep the base's weights bit for bit, the decoder and head move, and the returned model has
    every layer trainable again (nothing frozen is saved). Freezing without a base is refused."""
    from fosgate.core.synthetic import generate_cfos
    from fosgate.core.training import TrainConfig, TrainingPair, frozen_layers, train_model
    from fosgate.errors import InvalidInput

    image, truth, _ = generate_cfos(128, 256, seed=5)
    pairs = [TrainingPair(image[:, i * 128:(i + 1) * 128], truth[:, i * 128:(i + 1) * 128], f"p{i}") for i in range(2)]
    cfg = TrainConfig(epochs=1, tile_size=64, batch_size=4, steps_per_epoch=2, val_fraction=0.5, calibrate=False)
    base = train_model(pairs, cfg)
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in base.network.layers}
    encoder = {layer.name for layer in frozen_layers(base.network, "encoder")}
    assert encoder and all(n.startswith(("down", "bottom")) for n in encoder)
    tuned = train_model(pairs, replace(cfg, freeze="encoder", seed=1), base=base)
    assert tuned.metrics["frozen_layers"] == len(encoder)
    for layer in tuned.network.layers:
        assert layer.trainable
        if not layer.get_weights():
            continue
        same = all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), before[layer.name], strict=True))
        assert same == (layer.name in encoder), layer.name
    with pytest.raises(InvalidInput, match="base model"):
        train_model(pairs, replace(cfg, freeze="encoder"))
    with pytest.raises(InvalidInput, match="Unknown layer group"):
        train_model(pairs, replace(cfg, freeze="decoder"), base=tuned)


def test_fine_tuning_keeps_the_base_when_no_epoch_beats_it_on_validation():
    """keep_start (a library option, off by default): fine-tuning a base that segments scores the base's
    own weights as epoch 0 on the validation images; a fine-tuning that wrecks the net (learning rate 5) is
    not kept: the base's weights come back bit for bit, best_epoch is 0 and the start's validation F1 is
    recorded. With keep_start off (the default) the wrecked weights are returned."""
    from fosgate.core.synthetic import generate_cfos
    from fosgate.core.training import TrainConfig, TrainingPair, train_model

    image, truth, _ = generate_cfos(192, 384, seed=6)
    pairs = [TrainingPair(image[:, i * 128:(i + 1) * 128], truth[:, i * 128:(i + 1) * 128], f"p{i}") for i in range(3)]
    cfg = TrainConfig(epochs=4, tile_size=64, batch_size=4, steps_per_epoch=15, val_fraction=0.34, seed=0)
    base = train_model(pairs, cfg)
    assert base.metrics["val_object_f1_at_best_epoch"] > 0.3  # the base segments its validation tile
    weights = [w.copy() for w in base.network.get_weights()]
    wreck = replace(cfg, epochs=1, steps_per_epoch=3, learning_rate=5.0, keep_start=True)
    kept = train_model(pairs, wreck, base=_copy(base))
    assert kept.metrics["best_epoch"] == 0 and "val_object_f1_at_start" in kept.metrics
    assert kept.metrics["val_object_f1_at_best_epoch"] == kept.metrics["val_object_f1_at_start"]
    assert all(np.array_equal(a, b) for a, b in zip(kept.network.get_weights(), weights, strict=True))
    wrecked = train_model(pairs, replace(wreck, keep_start=TrainConfig.keep_start), base=_copy(base))
    assert wrecked.metrics["best_epoch"] == 1 and "val_object_f1_at_start" not in wrecked.metrics
    assert not all(np.array_equal(a, b) for a, b in zip(wrecked.network.get_weights(), weights, strict=True))


def _copy(model):
    """An independent copy of a FosgateModel (train_model fine-tunes its base in place)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        return FosgateModel.load(model.save(Path(tmp) / "m"))


def test_best_epoch_ties_go_to_the_lowest_validation_loss():
    """The kept epoch maximises (F1 or minus the loss while no epoch finds a cell, minus the loss) in
    float64: while no epoch finds a cell (F1 0) the lowest validation loss wins (not the first epoch); any
    epoch that finds cells beats every one that does not; equal F1, also a saturated 1.0, goes to the lower
    validation loss even when the losses differ by less than float32 can tell beside F1."""
    from fosgate.core.training import epoch_selection_key, epoch_selection_score

    def kept(epochs):
        keys = [epoch_selection_key(f1, loss) for f1, loss in epochs]
        return keys.index(max(keys)) + 1

    assert kept([(0.0, 1.5), (0.0, 0.4), (0.0, 0.6)]) == 2
    assert kept([(0.0, 0.1), (0.05, 0.9), (0.0, 0.05)]) == 2
    assert kept([(0.7, 0.3), (0.7, 0.2), (0.6, 0.1)]) == 2  # F1 decides; equal F1: the lower loss
    assert kept([(1.0, 3.3e-5), (1.0, 1.2e-5), (0.999, 0.0)]) == 2  # a saturated F1 does not keep epoch 1
    assert kept([(0.71, 5.0), (0.70, 0.0)]) == 1  # the loss never outweighs an F1 difference
    assert kept([(0.5, float("nan")), (0.5, 0.3)]) == 2
    assert epoch_selection_score(-0.8, 0.8) == -0.8  # no validation: minus the training loss, as before


def test_patience_stops_training_when_the_score_stops_improving():
    """patience=1 with a learning rate too small to change anything: the selection score is flat, so
    EarlyStopping ends training after the second epoch and the kept epoch is one of those run."""
    from fosgate.core.synthetic import generate_cfos
    from fosgate.core.training import TrainConfig, TrainingPair, train_model

    image, truth, _ = generate_cfos(128, 256, seed=4)
    pairs = [TrainingPair(image[:, :128], truth[:, :128], "a"), TrainingPair(image[:, 128:], truth[:, 128:], "b")]
    cfg = TrainConfig(epochs=5, tile_size=64, batch_size=2, steps_per_epoch=1, patience=1, learning_rate=1e-12,
                      calibrate=False)
    model = train_model(pairs, cfg)
    assert model.metrics["epochs_run"] == 2.0 and 1 <= model.metrics["best_epoch"] <= 2


def test_training_loss_keeps_its_gradient_when_the_head_saturates():
    """The loss is taken on logits through a weight-sharing view: a head driven to all-background (bias -60:
    sigmoid ~1e-26) still gets the gradient sigmoid(z) - y on its foreground pixels. The former loss
    clipped probabilities, which zeroed this gradient: the demo's net then stayed empty for good."""
    import tensorflow as tf

    from fosgate.core.training import logits_view, make_loss
    from fosgate.core.unet import build_model

    for arch, k in (("reference", 1), ("unet2", 2)):
        net = build_model(arch, 1, seed=0)
        kernel, bias = net.layers[-1].get_weights()
        net.layers[-1].set_weights([kernel * 0, np.full_like(bias, -60.0)])
        x = np.zeros((1, 32, 32, 1), np.float32)
        assert float(np.asarray(net(x)).max()) < 1e-20  # saturated, far below any probability clip
        y = np.zeros((1, 32, 32, k), np.float32)
        y[0, 8:16, 8:16, 0] = 1
        view = logits_view(net)
        assert {id(v) for v in net.trainable_variables} <= {id(v) for v in view.trainable_variables}
        with tf.GradientTape() as tape:
            loss = make_loss(k)(tf.constant(y), view(x))
        grad = tape.gradient(loss, net.layers[-1].bias)
        assert float(np.asarray(grad)[0]) < -1e-3  # pushes the foreground channel up
        np.testing.assert_allclose(np.asarray(view(x)), np.full((1, 32, 32, k), -60.0), atol=1e-5)


def test_untrained_head_starts_at_the_foreground_prior():
    from fosgate.core.training import _Prepared, init_head_prior
    from fosgate.core.unet import build_model

    net = build_model("unet2", 1, seed=0)
    y = np.zeros((64, 64, 2), np.float32)
    y[:8, :8, 0] = 1  # 1/64 of the pixels are foreground
    y[:2, :2, 1] = 1
    bias = init_head_prior(net, [_Prepared(np.zeros((64, 64, 1), np.float32), y, np.zeros((64, 64), np.int32))])
    np.testing.assert_allclose(net.layers[-1].get_weights()[1], bias)
    np.testing.assert_allclose(1 / (1 + np.exp(-bias)), [1 / 64, 4 / 4096], rtol=1e-5)
    assert float(np.asarray(net(np.zeros((1, 32, 32, 1), np.float32)))[..., 0].mean()) < 0.1


def test_weight_average_scores_and_keeps_the_average_and_trains_on_from_the_raw_weights():
    """WeightAverage: after every batch avg = m * avg + (1 - m) * w with m = min(momentum, (1 + t) / (10 + t));
    callbacks between it and its ``restore`` see the average at an epoch's end, those after it the raw
    weights again (training goes on from them). train_model(weight_average=...) keeps an average."""
    import keras

    from fosgate.core.synthetic import generate_cfos
    from fosgate.core.training import TrainConfig, TrainingPair, WeightAverage, train_model

    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.BatchNormalization()])
    net.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x, y = np.random.default_rng(0).normal(size=(32, 3)), np.random.default_rng(1).normal(size=(32, 2))
    batches, seen_averaged, seen_after = [], [], []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            batches.append(self.model.get_weights())

    class Seen(keras.callbacks.Callback):
        def __init__(self, into):
            super().__init__()
            self.into = into

        def on_epoch_end(self, epoch, logs=None):
            self.into.append(self.model.get_weights())

    average = WeightAverage(0.8)
    start = net.get_weights()
    net.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False,
            callbacks=[Record(), average, Seen(seen_averaged), average.restore, Seen(seen_after)])
    expect = [w.copy() for w in start]
    for t, ws in enumerate(batches):
        m = min(0.8, (1 + t) / (10 + t))
        expect = [m * e + (1 - m) * w for e, w in zip(expect, ws, strict=True)]
        if t == 3:  # end of epoch 1 (4 batches)
            for a, b in zip(seen_averaged[0], expect, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
            for a, b in zip(seen_after[0], ws, strict=True):
                np.testing.assert_array_equal(a, b)
    for a, b in zip(seen_averaged[1], expect, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not all(np.allclose(a, b) for a, b in zip(seen_averaged[1], batches[-1], strict=True))

    image, truth, _ = generate_cfos(128, 256, seed=4)
    pairs = [TrainingPair(image[:, :128], truth[:, :128], "a"), TrainingPair(image[:, 128:], truth[:, 128:], "b")]
    cfg = TrainConfig(epochs=2, tile_size=64, batch_size=2, steps_per_epoch=3, calibrate=False)
    plain, averaged = (train_model(pairs, replace(cfg, weight_average=w)) for w in (0.0, 0.9))
    assert averaged.metrics["epochs_run"] == 2.0
    assert not all(np.array_equal(a, b) for a, b in
                   zip(plain.network.get_weights(), averaged.network.get_weights(), strict=True))
    from fosgate.errors import InvalidInput

    with pytest.raises(InvalidInput, match="momentum"):
        train_model(pairs, replace(cfg, weight_average=1.0))
