"""Self-supervised pretraining of a segmentation U-Net by masked image modelling (MIM).

Following "Masked Image Modeling for Label-Efficient Segmentation in Two-Photon Excitation
Microscopy": square patches of unlabelled tiles are hidden and the network learns to reconstruct
them from their context. Patches are hidden either uniformly at random or preferentially where the
image is bright (``masking="intensity"``), so that the net has to model the stained nuclei, not the
empty background that dominates c-fos slides.

Invariants
- The segmentation network is trained *in place*: the reconstruction model shares every layer of
  the network up to the input of its output head(s) and adds one linear 1x1 convolution of its own;
  after pretraining the returned network has the same architecture, input normalisation and
  receptive field as before, only other weights, so ``train --base-model`` starts from it unchanged.
- The loss is the mean squared error on hidden pixels only (visible pixels carry no loss), in the
  normalised intensity space that training and prediction use (``fosgate.core.normalize``).
- Unlabelled tiles are read lazily, window by window, from the slides: memory grows with the number
  of sampled tiles and the tile size, never with the slide size.
- Deterministic for a given seed (up to TensorFlow's CPU kernels).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fosgate.core.normalize import Normalization
from fosgate.errors import Cancelled, InvalidInput

MASKINGS = ("random", "intensity")


@dataclass(frozen=True)
class PretrainConfig:
    """How to pretrain. Every bound lives in :meth:`validate`."""

    epochs: int = 20
    steps_per_epoch: int = 50
    batch_size: int = 8
    tile_size: int = 128
    patch_size: int = 16
    mask_ratio: float = 0.5
    masking: str = "intensity"
    learning_rate: float = 1e-3
    tiles: int = 512  # unlabelled tiles sampled from the slides (kept in memory)
    seed: int = 0

    def validate(self) -> PretrainConfig:
        if not 1 <= self.epochs <= 1000:
            raise InvalidInput(f"Pretraining epochs must be between 1 and 1000 (got {self.epochs}).")
        if not 1 <= self.steps_per_epoch <= 10_000:
            raise InvalidInput(f"Steps per epoch must be between 1 and 10000 (got {self.steps_per_epoch}).")
        if not 1 <= self.batch_size <= 256:
            raise InvalidInput(f"The batch size must be between 1 and 256 (got {self.batch_size}).")
        if self.tile_size % 16 or not 32 <= self.tile_size <= 512:
            raise InvalidInput(f"The pretraining tile must be a multiple of 16 between 32 and 512 px "
                               f"(got {self.tile_size}).")
        if self.patch_size < 2 or self.tile_size % self.patch_size:
            raise InvalidInput(f"The masked patch ({self.patch_size} px) must divide the tile ({self.tile_size} px).")
        if not (math.isfinite(self.mask_ratio) and 0.05 <= self.mask_ratio <= 0.95):
            raise InvalidInput(f"The masked fraction must be between 0.05 and 0.95 (got {self.mask_ratio}).")
        if self.masking not in MASKINGS:
            raise InvalidInput(f"Masking is one of {', '.join(MASKINGS)} (got '{self.masking}').")
        if not (math.isfinite(self.learning_rate) and 0 < self.learning_rate <= 1):
            raise InvalidInput(f"The learning rate must be in (0, 1] (got {self.learning_rate}).")
        if not 8 <= self.tiles <= 100_000:
            raise InvalidInput(f"Sample between 8 and 100000 unlabelled tiles (got {self.tiles}).")
        return self


def sample_tiles(slides: Sequence, normalization: Normalization, n: int, tile: int, seed: int = 0,
                 min_signal: float = 0.0, stats: Sequence[tuple[np.ndarray, np.ndarray]] | None = None
                 ) -> np.ndarray:
    """``n`` normalised tiles (n, tile, tile, C) read at random positions of the open ``slides``
    (``fosgate.core.slides.Slide``, or :class:`SlideAtScale`), spread over the slides in proportion to
    their areas. Slides smaller than ``tile`` are padded with zeros. Tiles whose mean normalised
    intensity is below ``min_signal`` are redrawn a few times (empty glass teaches nothing). ``stats``:
    each slide's ``(lo, hi)`` when already measured (default: ``normalization.stats`` of each slide)."""
    if not slides:
        raise InvalidInput("Pretraining needs at least one slide.")
    rng = np.random.default_rng(seed)
    areas = np.array([s.info.height * s.info.width for s in slides], float)
    which = rng.choice(len(slides), size=n, p=areas / areas.sum())
    stats = list(stats) if stats is not None else [normalization.stats(s) for s in slides]
    channels = {s.info.channels for s in slides}
    if len(channels) > 1:
        raise InvalidInput("The slides mix grey and colour images; pretrain one model per kind of image.")
    out = np.zeros((n, tile, tile, channels.pop()), np.float32)
    for i, k in enumerate(which):
        s = slides[k]
        h, w = s.info.height, s.info.width
        lo, hi = stats[k]
        for _attempt in range(4):
            y = int(rng.integers(0, max(h - tile, 0) + 1))
            x = int(rng.integers(0, max(w - tile, 0) + 1))
            raw = s.read(y, min(y + tile, h), x, min(x + tile, w))
            t = Normalization.apply(raw, lo, hi, normalization.clip_max)
            if float(t.mean()) >= min_signal:
                break
        out[i, : t.shape[0], : t.shape[1]] = t
    return out


def allocate_tiles(areas: Sequence[float], n: int, seed: int = 0) -> list[int]:
    """How many of ``n`` tiles each slide gives: a multinomial draw in proportion to the slides' areas
    (what :func:`sample_tiles` does over several open slides), so that a job can open one slide at a time."""
    a = np.asarray(areas, float)
    if a.ndim != 1 or not len(a) or not np.all(a > 0):
        raise InvalidInput("Pretraining needs at least one non-empty slide.")
    return [int(c) for c in np.random.default_rng(seed).multinomial(n, a / a.sum())]


class SlideAtScale:
    """An open slide seen at another pixel size, as prediction reads it (``fosgate.core.rescale``):
    ``factor`` model pixels per slide pixel; ``info`` has the model-scale height and width, ``read`` takes
    model-scale coordinates. Reads stay window by window (a window plus the anti-alias margin)."""

    def __init__(self, slide, factor: float, pixel_size_um: float = 0.0):
        from dataclasses import replace

        from fosgate.core.rescale import read_rescaled, scaled_size

        info = slide.info
        self.factor = float(factor)
        self.info = replace(info, height=scaled_size(info.height, factor), width=scaled_size(info.width, factor),
                            pixel_size_um=float(pixel_size_um or 0.0))
        self._read = read_rescaled(slide.read, info.height, info.width, factor)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self._read(y0, y1, x0, x1)


def plot_pretraining_curve(history: dict[str, list[float]], path: str | Path) -> Path:
    """The masked-reconstruction loss per epoch, training and held-out tiles (PNG at ``path``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key, label in (("loss", "training tiles"), ("val_loss", "held-out tiles")):
        values = history.get(key, [])
        ax.plot(range(1, len(values) + 1), values, marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("masked reconstruction MSE")
    ax.set_title("Self-supervised pretraining (no labels)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def patch_masks(tiles: np.ndarray, patch: int, ratio: float, masking: str, rng: np.random.Generator) -> np.ndarray:
    """Boolean masks (n, h, w) of hidden pixels: ``ratio`` of the ``patch``-sized squares of each tile.

    ``random`` hides squares uniformly; ``intensity`` draws them with probability proportional to the
    square's mean intensity rank (bright squares, where nuclei are, are hidden more often; every square
    keeps a non-zero chance)."""
    n, h, w = tiles.shape[:3]
    gh, gw = h // patch, w // patch
    k = max(1, int(round(ratio * gh * gw)))
    out = np.zeros((n, gh, gw), bool)
    for i in range(n):
        if masking == "intensity":
            means = tiles[i, : gh * patch, : gw * patch].mean(axis=-1).reshape(gh, patch, gw, patch).mean((1, 3))
            ranks = np.argsort(np.argsort(means.ravel())).astype(float) + 1.0
            p = ranks / ranks.sum()
            chosen = rng.choice(gh * gw, size=k, replace=False, p=p)
        else:
            chosen = rng.choice(gh * gw, size=k, replace=False)
        out[i].flat[chosen] = True
    return np.repeat(np.repeat(out, patch, axis=1), patch, axis=2)


def reconstruction_model(net):
    """A Keras model sharing ``net``'s layers up to the input of its output head(s), with a linear
    1x1 convolution that predicts the input channels (the reconstruction head)."""
    import keras

    heads = {id(t._keras_history.operation): t._keras_history.operation for t in net.outputs}
    features = [op.input for op in heads.values()]
    feature = features[0]
    channels = int(net.input_shape[-1])
    recon = keras.layers.Conv2D(channels, 1, activation=None, name="mim_reconstruction")(feature)
    return keras.Model(net.input, recon, name="fosgate_mim")


def _masked_mse(y_true, y_pred):
    """MSE over hidden pixels; ``y_true`` carries the target channels plus the hidden-pixel mask last."""
    import keras.ops as ops

    target, hidden = y_true[..., :-1], y_true[..., -1:]
    err = ops.square(y_pred - target) * hidden
    return ops.sum(err) / (ops.sum(hidden) * ops.cast(ops.shape(target)[-1], "float32") + 1e-6)


@dataclass
class PretrainResult:
    net: object  # the segmentation network with pretrained weights
    reconstruction: object  # the net's layers + the reconstruction head (to inspect what was learnt)
    history: dict[str, list[float]]
    seconds: float


def pretrain(net, tiles: np.ndarray, config: PretrainConfig,
             on_epoch: Callable[[int, int, float], None] | None = None,
             should_cancel: Callable[[], bool] | None = None) -> PretrainResult:
    """Pretrain ``net`` (a functional Keras U-Net, modified in place) on normalised ``tiles``
    (n, t, t, C) by masked image modelling; returns it with the loss history (train, and a fixed
    held-out set of 10 % of the tiles)."""
    import keras

    config.validate()
    if tiles.ndim != 4 or tiles.shape[0] < 2:
        raise InvalidInput("Pretraining needs at least two unlabelled tiles.")
    if int(tiles.shape[-1]) != int(net.input_shape[-1]):
        raise InvalidInput(f"The network takes {net.input_shape[-1]}-channel images; the tiles have "
                           f"{tiles.shape[-1]}.")
    t0 = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    keras.utils.set_random_seed(config.seed)
    order = rng.permutation(len(tiles))
    n_val = max(1, len(tiles) // 10)
    val, train = tiles[order[:n_val]], tiles[order[n_val:]]
    val_hidden = patch_masks(val, config.patch_size, config.mask_ratio, config.masking, np.random.default_rng(1))
    val_x = np.where(val_hidden[..., None], 0.0, val).astype(np.float32)
    val_y = np.concatenate([val, val_hidden[..., None].astype(np.float32)], axis=-1)

    model = reconstruction_model(net)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=_masked_mse)

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()

        def __len__(self):
            return config.steps_per_epoch

        def __getitem__(self, index):
            idx = rng.integers(0, len(train), size=config.batch_size)
            xb = train[idx].copy()
            flips = rng.integers(0, 8)
            xb = np.rot90(xb, k=int(flips % 4), axes=(1, 2))
            if flips >= 4:
                xb = xb[:, :, ::-1]
            xb = np.ascontiguousarray(xb)
            hidden = patch_masks(xb, config.patch_size, config.mask_ratio, config.masking, rng)
            x = np.where(hidden[..., None], 0.0, xb).astype(np.float32)
            y = np.concatenate([xb, hidden[..., None].astype(np.float32)], axis=-1)
            return x, y

    class Progress(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if should_cancel and should_cancel():
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            if on_epoch:
                on_epoch(epoch + 1, config.epochs, float((logs or {}).get("val_loss", float("nan"))))

    hist = model.fit(Batches(), epochs=config.epochs, validation_data=(val_x, val_y), verbose=0,
                     validation_batch_size=config.batch_size, callbacks=[Progress()])
    if should_cancel and should_cancel():
        raise Cancelled("Cancelled by user.")
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    return PretrainResult(net, model, history, time.perf_counter() - t0)
