"""Seed ensembles (core, no server): TrainConfig(members=K) trains K networks on one split and returns one
FosgateModel whose network averages their maps; it saves, loads and stitches like one network."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import tifffile

from fosgate.core.ensemble import average_network, ensemble_size
from fosgate.core.model import FosgateModel, PredictOptions
from fosgate.core.synthetic import generate_cfos
from fosgate.core.training import TrainConfig, TrainingPair, train_model
from fosgate.errors import InvalidInput

CFG = TrainConfig(epochs=2, tile_size=64, batch_size=4, steps_per_epoch=2, val_fraction=0.34)


@pytest.fixture(scope="module")
def pairs():
    image, truth, _ = generate_cfos(192, 384, seed=3)
    return [TrainingPair(image[:, i * 128:(i + 1) * 128], truth[:, i * 128:(i + 1) * 128], f"p{i}",
                         pixel_size_um=0.8) for i in range(3)]


@pytest.fixture(scope="module")
def trained(pairs):
    epochs = []
    single = train_model(pairs, replace(CFG, calibrate=False))
    ensemble = train_model(pairs, replace(CFG, members=2), on_epoch=epochs.append, name="pair")
    return single, ensemble, epochs


def test_members_train_in_turn_on_one_split_and_their_maps_are_averaged(pairs, trained):
    """Member 0 is the single network of the same config and seed; the other trains with another seed on
    the same split; progress counts every member's epochs; the ensemble's maps are the members' mean and
    its post-processing is calibrated on them."""
    single, ensemble, epochs = trained
    assert ensemble_size(single.network) == 1 and ensemble_size(ensemble.network) == 2
    assert [(e.epoch, e.epochs) for e in epochs] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    m = ensemble.metrics
    assert m["members"] == 2.0 and m["val_images"] == single.metrics["val_images"] == 3.0  # a band of each
    assert {"member0_best_epoch", "member1_best_epoch"} <= m.keys() and m["calibrated"] == 1.0
    assert ensemble.name == "pair" and ensemble.pixel_size_um == 0.8
    assert ensemble.receptive_field == single.receptive_field and ensemble.halo == single.halo
    x = np.random.default_rng(0).random((1, 64, 96, 1), dtype=np.float32)
    members = [layer for layer in ensemble.network.layers if layer.name.startswith("member")]
    mean = np.mean([layer(x).numpy() for layer in members], axis=0)
    np.testing.assert_allclose(ensemble.network(x).numpy(), mean, atol=1e-6)
    np.testing.assert_allclose(members[0](x).numpy(), single.network(x).numpy(), atol=1e-5)
    assert not np.allclose(members[1](x).numpy(), members[0](x).numpy(), atol=1e-3)


def test_an_ensemble_saves_loads_and_stitches_exactly(pairs, trained, tmp_path):
    """One model.keras holds every member; the loaded ensemble gives the same maps; a slide predicted in
    small tiles with the members' halo equals a single pass over the whole image."""
    from fosgate.core.slides import open_slide

    _, ensemble, _ = trained
    loaded = FosgateModel.load(ensemble.save(tmp_path / "m"))
    assert ensemble_size(loaded.network) == 2 and loaded.post == ensemble.post
    image = np.concatenate([p.image for p in pairs], axis=1)
    x = (image / 255.0).astype(np.float32)[..., None]
    maps = ensemble.predict_maps(x)
    np.testing.assert_array_equal(loaded.predict_maps(x), maps)
    np.testing.assert_array_equal(loaded.predict_maps(x, tile=64), maps)  # stitched == single pass
    tifffile.imwrite(tmp_path / "s.tif", image)
    whole = loaded.predict_instances(image, pixel_size_um=0.8)
    with open_slide(tmp_path / "s.tif") as slide:
        out = loaded.predict_slide(slide, tmp_path / "o", "s", PredictOptions(tile=64, pixel_size_um=0.8))
    assert out.windows > 1
    np.testing.assert_array_equal(tifffile.imread(out.paths["labels"]) > 0, whole > 0)


def test_fine_tuning_an_ensemble_from_a_base_leaves_the_base_and_an_ensemble_is_no_base(pairs, trained):
    """Members fine-tuned from one base start from copies of it (the base's weights stay); an ensemble as
    the base, or a member count out of range, is refused with a sentence."""
    single, ensemble, _ = trained
    before = [w.copy() for w in single.network.get_weights()]
    tuned = train_model(pairs, replace(CFG, members=2, epochs=1, calibrate=False), base=single)
    assert ensemble_size(tuned.network) == 2
    assert all(np.array_equal(a, b) for a, b in zip(single.network.get_weights(), before, strict=True))
    with pytest.raises(InvalidInput, match="ensemble of several networks"):
        train_model(pairs, CFG, base=ensemble)
    for k in (0, 9):
        with pytest.raises(InvalidInput, match="1 to 8 networks"):
            train_model(pairs, replace(CFG, members=k))
    with pytest.raises(ValueError, match="at least two"):
        average_network([single.network])
