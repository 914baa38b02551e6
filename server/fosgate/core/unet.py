"""The U-Nets: the reference one (Cai, "Advanced Image Segmentation Techniques ... C-fos", section II.F)
and the instance-aware default (``unet2``), the same network with a second output map.

Architecture: contracting path of two 3x3 'same' convolutions + ReLU per level with 16-32-64-128
filters and 2x2 max-pooling, a 256-filter bottleneck, an expanding path of 2x2 stride-2 transposed
convolutions concatenated with the matching contracting feature map followed by two 3x3 convolutions,
and a 1x1 sigmoid head. Trained with binary cross-entropy and Adam.

Architectures (:data:`ARCHS`):

- ``reference``: one sigmoid output, the foreground probability (the paper's net, BCE + Adam).
- ``unet2`` (default): the same contracting/expanding path with two sigmoid output channels,
  ``[foreground probability, centre map]``; the centre map is each cell's distance to the background
  divided by that cell's largest distance (1 at the centre, falling to 0 at its border and in the gap
  between touching cells). Instances come from a seeded watershed on the *stitched* maps
  (``fosgate.core.instances``): seeds are connected regions where the centre map is high.

Invariants
- The network is fully convolutional: input ``(batch, H, W, C)`` with H and W multiples of
  :data:`MULTIPLE` (16 = 2**4 poolings) gives output ``(batch, H, W, K)`` in [0, 1]
  (K = 1 for ``reference``, 2 for ``unet2``).
- The output at a pixel depends only on input within :func:`receptive_field_radius` pixels of it
  (and on where the image borders are, because of 'same' zero padding); this is what makes tiled
  prediction with a halo of at least that radius equal to a single pass (see ``fosgate.core.predict``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REFERENCE_FILTERS: tuple[int, ...] = (16, 32, 64, 128, 256)
MULTIPLE = 2 ** (len(REFERENCE_FILTERS) - 1)
DEFAULT_ARCH = "unet2"
# architecture name -> number of output channels (all share the reference filters unless given)
ARCHS: dict[str, int] = {"reference": 1, "unet2": 2}
OUTPUT_NAMES: dict[str, tuple[str, ...]] = {"reference": ("foreground",), "unet2": ("foreground", "centre")}


def check_arch(arch: str) -> str:
    """``arch`` if known (``reference`` or ``unet2``), else ValueError with the choices."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(sorted(ARCHS))}")
    return arch


def build_model(arch: str = DEFAULT_ARCH, in_channels: int = 1, filters: Sequence[int] = REFERENCE_FILTERS,
                seed: int | None = None):
    """The (uncompiled) network of architecture ``arch`` (see module docstring)."""
    return build_unet(in_channels, filters, seed, outputs=ARCHS[check_arch(arch)])


def build_unet(in_channels: int = 1, filters: Sequence[int] = REFERENCE_FILTERS, seed: int | None = None,
               outputs: int = 1):
    """Build the (uncompiled) U-Net for ``in_channels`` input channels and any H, W that are multiples of
    ``2 ** (len(filters) - 1)``, with ``outputs`` sigmoid channels (1: the reference U-Net)."""
    import keras
    from keras import layers

    if in_channels < 1:
        raise ValueError("in_channels must be >= 1")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(None, None, in_channels), name="image")
    x = inputs
    skips = []

    def double_conv(t, n: int, name: str):
        t = layers.Conv2D(n, 3, padding="same", activation="relu", kernel_initializer="he_normal", name=f"{name}_a")(t)
        return layers.Conv2D(n, 3, padding="same", activation="relu", kernel_initializer="he_normal", name=f"{name}_b")(t)

    for level, n in enumerate(filters[:-1]):
        x = double_conv(x, n, f"down{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = double_conv(x, filters[-1], "bottom")
    for level in reversed(range(len(filters) - 1)):
        n = filters[level]
        x = layers.Conv2DTranspose(n, 2, strides=2, padding="same", name=f"up{level}_t")(x)
        x = layers.Concatenate(name=f"up{level}_cat")([x, skips[level]])
        x = double_conv(x, n, f"up{level}")
    out = layers.Conv2D(outputs, 1, activation="sigmoid", name="probability" if outputs == 1 else "maps")(x)
    return keras.Model(inputs, out, name="fosgate_unet" if outputs == 1 else "fosgate_unet2")


def compile_unet(model, learning_rate: float = 1e-3) -> None:
    """Compile with the reference loss and optimiser (binary cross-entropy, Adam)."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy")


def receptive_field_radius(model, size: int = 384) -> int:
    """Measure how far (in pixels) an output pixel 'sees': the radius of the non-zero gradient of
    the centre output pixel with respect to the input, as StarDist measures it. Uses a random input
    so that ReLUs are not all dead."""
    import numpy as np
    import tensorflow as tf

    c = int(model.input_shape[-1])
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((1, size, size, c), dtype=np.float32))
    centre = size // 2
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = model(x, training=False)
        out = tf.reduce_sum(y[0, centre, centre, :])
    g = np.abs(tape.gradient(out, x).numpy()[0]).sum(axis=-1)
    ys, xs = np.nonzero(g)
    if ys.size == 0:  # an untrained net whose ReLUs are all dead here: assume the worst case
        return centre
    return int(max(centre - ys.min(), ys.max() - centre, centre - xs.min(), xs.max() - centre))


def required_halo(radius: int, multiple: int = MULTIPLE) -> int:
    """Smallest halo that is a multiple of ``multiple`` and covers ``radius``."""
    return -(-max(radius, 0) // multiple) * multiple
