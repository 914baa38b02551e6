"""Seed ensembles: several networks of one architecture trained on the same labels with other seeds,
their output maps averaged (``TrainConfig.members``; trained by ``fosgate.core.training.train_model``).

Invariants
- The members share the architecture, input channels, normalisation, pixel size and receptive field;
  they are trained on the same training / validation split (the ensemble's seed), member ``i`` with
  seed ``seed + i * MEMBER_SEED_STRIDE`` for its initial weights, crops and augmentation (or, fine-tuning,
  each from a copy of the same base model).
- The ensemble is one Keras model: ``image`` -> every member -> the element-wise mean of their maps
  (layer ``mean``). The mean is pointwise, so the ensemble's output at a pixel depends on no more input
  than one member's: the members' receptive field and halo hold, and tiled prediction equals a single
  pass exactly as for one network. It saves and loads as one ``model.keras``.
- Its post-processing is calibrated on the shared validation images from the averaged maps, as one
  network's is. An ensemble is not fine-tuned further (a base model is one network).
"""

from __future__ import annotations

MEMBER_LAYER_PREFIX = "member"
MAX_MEMBERS = 8
MEMBER_SEED_STRIDE = 1000  # member i trains with seed + i * this (initial weights, crops, augmentation)


def average_network(networks: list):
    """One Keras model whose output is the mean of ``networks``' outputs (same input and output shape).
    The members keep their weights (shared, not copied)."""
    import keras

    if len(networks) < 2:
        raise ValueError("an ensemble needs at least two networks")
    first = networks[0]
    image = keras.Input(shape=first.input_shape[1:], name="image")
    members = [keras.Model(n.input, n.output, name=f"{MEMBER_LAYER_PREFIX}{i}") for i, n in enumerate(networks)]
    mean = keras.layers.Average(name="mean")([m(image) for m in members])
    return keras.Model(image, mean, name="fosgate_ensemble")


def ensemble_size(network) -> int:
    """How many networks ``network`` averages (1: a single network)."""
    import keras

    if not isinstance(network.layers[-1], keras.layers.Average):
        return 1
    return sum(1 for layer in network.layers if layer.name.startswith(MEMBER_LAYER_PREFIX))
