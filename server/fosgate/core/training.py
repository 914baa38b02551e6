"""Training a ``FosgateModel`` on labelled images (whole images or labelled rectangles of slides).

Library entry point: ``train_model(pairs, TrainConfig(...)) -> FosgateModel`` (``model.history`` holds
the per-epoch curve, ``model.metrics`` the validation scores, ``model.post`` the calibrated
post-processing). ``train_unet`` is the former interface (the reference net, a Keras model back).

Invariants
- Inputs are normalised with each pair's slide statistics (``lo``/``hi``) and the model's
  :class:`~fosgate.core.normalize.Normalization`, exactly as prediction does. Pairs whose pixel size is
  known and differs from the model's are resampled to the model's scale first (``fosgate.core.rescale``).
- Targets, from binary or instance-label masks (binary masks become 4-connected instances): channel 0
  is the foreground with a 1-px gap where two instances touch; channel 1 (``unet2``) the centre map,
  each instance's distance to background/other instances divided by its largest value.
- Validation is held out before training (:func:`split_pairs`): a bottom band of every image when there
  are a few large ones (``metrics['val_band_split']`` = 1), else whole images, or the bottom
  ``val_fraction`` of a single image. Every epoch it is scored by *object F1* (one-to-one matching at
  IoU >= 0.5, as StarDist's ``matching``) with the default post-processing; the returned model carries
  the weights of the best epoch (equal F1, also 0, goes to the lowest validation loss:
  :func:`epoch_selection_key`), and training stops after ``patience`` epochs without improvement
  (0 = never). Then threshold(s), min size and seed level are chosen on the same images to
  maximise object F1 (:func:`calibrate_postprocess`), as StarDist's ``optimize_thresholds`` does; ties
  on the validation images go to the better object F1 on the training images (in-sample). A set
  with no held-out image (``val_fraction`` 0, or one image too small to split) is calibrated on its
  training images instead (:func:`in_sample_calibration_set`; ``metrics['calibrated_in_sample']`` = 1,
  scores stored as ``train_*``).
- Training runs through ``keras.Model.fit`` with callbacks (progress, cancel, the best epoch's weights
  kept and restored, early stopping after ``patience`` epochs), crops of ``tile_size`` px drawn and
  augmented on the fly by a ``PyDataset``, and a cosine learning-rate decay over all steps.
- Deterministic for a given seed (up to TensorFlow's CPU kernels).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from fosgate.core.ensemble import MAX_MEMBERS, MEMBER_SEED_STRIDE, average_network, ensemble_size
from fosgate.core.metrics import as_instances, mean_pixel_scores, object_scores, summarize_objects
from fosgate.core.normalize import Normalization
from fosgate.errors import Cancelled, InvalidInput

DEFAULT_THRESHOLD = 0.5
CANDIDATE_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 .. 0.95


@dataclass
class TrainingPair:
    image: np.ndarray  # (h, w, C) raw uint8/uint16
    mask: np.ndarray  # (h, w) binary or instance labels
    name: str = ""
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    pixel_size_um: float = 0.0  # 0 = unknown


@dataclass(frozen=True)
class TrainConfig:
    """Training settings. ``arch``: ``unet2`` (default, instance-aware) or ``reference``;
    ``steps_per_epoch`` None: about two passes over the labelled pixels per epoch, 25..400 steps;
    ``pixel_size_um`` 0: the median of the pairs' known pixel sizes (0 if none known); ``augment``:
    intensity gain/offset/gamma, noise, blur, scale jitter, flips, 90-degree rotations; ``freeze``:
    ``"encoder"`` keeps a base model's contracting path (``down*`` and ``bottom`` convolutions) fixed while
    fine-tuning, ``""`` trains every layer; ``keep_start``: when fine-tuning a base model that segments
    (not a pretrained-only one) with real validation images, its own weights are a candidate "epoch 0",
    kept when no epoch scores higher on the validation images (the post-processing is calibrated on them
    either way). Off by default, by measurement: on c-FOS new labs (inns1, wue1; 3 seeds, 18 fine-tunings
    on 4-192 tiles) it changed 2 fine-tunings, on 4 wue1 tiles whose validation tile held a few cells: one
    scored 0.028 lower on the test images, the other level (bench/results/cfos_labels_budget.json).
    ``weight_average``: momentum per step of an exponential moving average of the weights (e.g. 0.99;
    0: off, the default until measured better); with it each epoch is scored, kept and returned with the
    averaged weights, while training goes on from the raw ones. ``members``: networks in a seed ensemble
    (:func:`train_members` + :func:`ensemble_of`, ``fosgate.core.ensemble``; 1: one network); training
    and prediction cost grow with it. ``split_seed``: the seed of the training / validation split (None:
    ``seed``), so that networks trained with other seeds can share one split."""

    epochs: int = 30
    tile_size: int = 256
    batch_size: int = 8
    val_fraction: float = 0.2
    seed: int = 0
    learning_rate: float = 1e-3
    steps_per_epoch: int | None = None
    patience: int = 0
    foreground_bias: float = 0.5  # fraction of crops centred near a foreground pixel
    arch: str = "unet2"
    augment: bool = True
    pixel_size_um: float = 0.0
    calibrate: bool = True
    freeze: str = ""
    keep_start: bool = False
    weight_average: float = 0.0
    members: int = 1
    split_seed: int | None = None


@dataclass
class EpochReport:
    epoch: int
    epochs: int
    loss: float
    val_loss: float
    pixel_f1: float
    pixel_miou: float
    seconds: float = 0.0
    object_f1: float = float("nan")


@dataclass
class _Prepared:
    x: np.ndarray  # (h, w, C) float32 normalised, at least tile x tile
    y: np.ndarray  # (h, w, K) float32 targets
    inst: np.ndarray  # (h, w) int32 instance labels
    fg: np.ndarray = field(default_factory=lambda: np.empty((0, 2), np.int64))  # foreground pixel coords


def _touching(m: np.ndarray) -> np.ndarray:
    border = np.zeros(m.shape, bool)
    for dy, dx in ((0, 1), (1, 0)):
        a = m[: m.shape[0] - dy, : m.shape[1] - dx]
        b = m[dy:, dx:]
        touch = (a > 0) & (b > 0) & (a != b)
        border[: m.shape[0] - dy, : m.shape[1] - dx] |= touch
        border[dy:, dx:] |= touch
    return border


def training_target(mask: np.ndarray) -> np.ndarray:
    """0/1 target from a binary or instance-label mask (touching instances separated by a 1-px gap)."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m.max(axis=-1)
    fg = m > 0
    if np.unique(m[fg]).size > 1:
        fg &= ~_touching(m)
    return fg.astype(np.float32)


def centre_target(inst: np.ndarray) -> np.ndarray:
    """Each instance's distance to the background (or a touching instance), divided by its maximum."""
    fg = (inst > 0) & ~_touching(inst)
    dist = ndimage.distance_transform_edt(fg).astype(np.float32)
    n = int(inst.max())
    if n == 0:
        return dist
    peak = np.zeros(n + 1, np.float32)
    peak[1:] = ndimage.maximum(dist, inst, np.arange(1, n + 1))
    return np.where(inst > 0, dist / np.maximum(peak[inst], 1e-6), 0).astype(np.float32)


def targets(inst: np.ndarray, outputs: int) -> np.ndarray:
    """``(h, w, outputs)`` training targets of an instance-label image (module docstring)."""
    t = [training_target(inst)]
    if outputs > 1:
        t.append(centre_target(inst))
    return np.stack(t, axis=-1)


def _rescale_pair(image: np.ndarray, inst: np.ndarray, f: float) -> tuple[np.ndarray, np.ndarray]:
    from fosgate.core.rescale import resample_image, scaled_size

    x = resample_image(image.astype(np.float32), f)
    h, w = inst.shape
    ys = np.clip(np.rint((np.arange(scaled_size(h, f)) + 0.5) / f - 0.5), 0, h - 1).astype(np.int64)
    xs = np.clip(np.rint((np.arange(scaled_size(w, f)) + 0.5) / f - 0.5), 0, w - 1).astype(np.int64)
    return x, inst[np.ix_(ys, xs)]


def _prepare(pair: TrainingPair, normalization: Normalization, tile: int, outputs: int,
             model_px: float) -> _Prepared:
    from fosgate.core.rescale import scale_factor

    image = pair.image if pair.image.ndim == 3 else pair.image[..., None]
    if image.shape[:2] != np.asarray(pair.mask).shape[:2]:
        raise InvalidInput(f"Image and mask of '{pair.name}' differ in size: {image.shape[1]}x{image.shape[0]} "
                           f"vs {pair.mask.shape[1]}x{pair.mask.shape[0]}.")
    if pair.lo is None or pair.hi is None:
        lo, hi = normalization.stats_of_array(image)
    else:
        lo, hi = pair.lo, pair.hi
    x = Normalization.apply(image, lo, hi, normalization.clip_max)
    inst = as_instances(np.asarray(pair.mask)).astype(np.int32)
    f = scale_factor(pair.pixel_size_um, model_px)
    if f != 1.0:
        x, inst = _rescale_pair(x, inst, f)
    y = targets(inst, outputs)
    h, w = inst.shape
    if h < tile or w < tile:
        ph, pw = max(0, tile - h), max(0, tile - w)
        x = np.pad(x, ((0, ph), (0, pw), (0, 0)))
        y = np.pad(y, ((0, ph), (0, pw), (0, 0)))
        inst = np.pad(inst, ((0, ph), (0, pw)))
    return _Prepared(x, y, inst, np.argwhere(y[..., 0] > 0))


def _sub(p: _Prepared, rows: slice) -> _Prepared:
    return _Prepared(p.x[rows], p.y[rows], p.inst[rows], np.argwhere(p.y[rows][..., 0] > 0))


BAND_SPLIT_MAX_IMAGES = 9  # up to this many images, each large one gives a validation band (split_pairs)


def _band_rows(h: int, val_fraction: float, tile: int) -> int:
    """Rows of an image of height ``h`` that a band split holds out: ``round(h * val_fraction)`` if that
    band and the rows left for training each hold a full training tile, else 0 (too small to split)."""
    n = int(round(h * val_fraction))
    return n if n >= tile and h - n >= tile else 0


def split_pairs(prepared: list[_Prepared], val_fraction: float, tile: int, seed: int
                ) -> tuple[list[_Prepared], list[_Prepared]]:
    """The training and validation sets (``val_fraction`` 0: no validation).

    - Few large images (at most :data:`BAND_SPLIT_MAX_IMAGES`, each tall enough for a band of
      ``val_fraction`` of its rows holding a training tile, with a tile left above it): the bottom band of
      *every* image is held out, so that validation shows each image's stain and cells. Holding out whole
      images when there are few lets one unrepresentative image decide the best epoch and the
      post-processing: measured on FNC (tests/test_fnc_cli's training: 2 yellow + 3 red images, 80 steps,
      the held-out yellow image's pixel F1 with the min size 100 px), whole images held out (a red image
      with 5 cells) 0.254 / 0.601 / 0.645 at seeds 0 / 1 / 2, a band of every image 0.719 / 0.748 / 0.836.
    - Otherwise, two images or more: whole images (a seeded random ``val_fraction`` of them, at least one,
      never all).
    - One image: its bottom ``val_fraction`` (at least a tile of rows); one too small to split is validated
      on itself (``val_is_train`` in the metrics)."""
    if val_fraction <= 0:
        return prepared, []
    bands = [_band_rows(p.y.shape[0], val_fraction, tile) for p in prepared]
    if 2 <= len(prepared) <= BAND_SPLIT_MAX_IMAGES and all(bands):
        return ([_sub(p, slice(0, p.y.shape[0] - n)) for p, n in zip(prepared, bands, strict=True)],
                [_sub(p, slice(p.y.shape[0] - n, None)) for p, n in zip(prepared, bands, strict=True)])
    if len(prepared) >= 2:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(prepared))
        n_val = min(len(prepared) - 1, max(1, round(len(prepared) * val_fraction)))
        val = {int(i) for i in order[:n_val]}
        return [p for i, p in enumerate(prepared) if i not in val], [p for i, p in enumerate(prepared) if i in val]
    p = prepared[0]
    h = p.y.shape[0]
    n_val = max(tile, int(round(h * val_fraction)))
    if h - n_val < tile:
        return prepared, prepared  # too small to split: validate on the training image (stated in metrics)
    return [_sub(p, slice(0, h - n_val))], [_sub(p, slice(h - n_val, h))]


# ---------------------------------------------------------------- augmentation and batches
def _resize(a: np.ndarray, size: int) -> np.ndarray:
    """Linear resampling of a square ``(S, S, K)`` crop to ``(size, size, K)`` (pixel centres aligned)."""
    from fosgate.core.rescale import _interp_axis

    s = a.shape[0]
    if s == size:
        return a
    c = (np.arange(size) + 0.5) * s / size - 0.5
    return _interp_axis(_interp_axis(a, c, 0, 0), c, 0, 1)


def augment_intensity(x: np.ndarray, rng: np.random.Generator, clip_max: float) -> np.ndarray:
    """Gamma, gain and offset, Gaussian noise and blur of a normalised crop (each with some probability)."""
    gamma = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
    gain = float(np.exp(rng.uniform(np.log(0.6), np.log(1.5))))
    offset = float(rng.uniform(-0.1, 0.1))
    x = gain * np.power(np.maximum(x, 0), gamma) + offset
    if rng.random() < 0.3:
        x = ndimage.gaussian_filter(x, sigma=(rng.uniform(0.3, 1.2),) * 2 + (0,))
    if rng.random() < 0.5:
        x = x + rng.normal(0, rng.uniform(0.0, 0.08), x.shape)
    return np.clip(x, 0, clip_max).astype(np.float32)


class _Crops:
    """Random crops (some centred near foreground), augmented; ``__call__`` gives one batch."""

    def __init__(self, train: list[_Prepared], config: TrainConfig, clip_max: float):
        self.train, self.cfg, self.clip_max = train, config, clip_max
        self.rng = np.random.default_rng(config.seed)
        areas = np.array([p.inst.size for p in train], np.float64)
        self.weights = areas / areas.sum()

    def crop(self) -> tuple[np.ndarray, np.ndarray]:
        t, rng = self.cfg.tile_size, self.rng
        p = self.train[rng.choice(len(self.train), p=self.weights)]
        h, w = p.inst.shape
        s = t
        if self.cfg.augment:  # scale jitter: a crop of s px resized to t px
            s = int(np.clip(round(t / np.exp(rng.uniform(np.log(0.8), np.log(1.25)))), 16, min(h, w)))
        if len(p.fg) and rng.random() < self.cfg.foreground_bias:
            cy, cx = p.fg[rng.integers(len(p.fg))]
            y0 = int(np.clip(cy - rng.integers(s), 0, h - s))
            x0 = int(np.clip(cx - rng.integers(s), 0, w - s))
        else:
            y0, x0 = int(rng.integers(h - s + 1)), int(rng.integers(w - s + 1))
        x = _resize(p.x[y0:y0 + s, x0:x0 + s], t)
        y = _resize(p.y[y0:y0 + s, x0:x0 + s], t)
        if s != t:
            y[..., 0] = y[..., 0] >= 0.5
        k = int(rng.integers(4))
        x, y = np.rot90(x, k), np.rot90(y, k)
        if rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        if self.cfg.augment:
            x = augment_intensity(x, rng, self.clip_max)
        return x, y

    def __call__(self) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = zip(*(self.crop() for _ in range(self.cfg.batch_size)), strict=True)
        return np.stack(xs).astype(np.float32), np.stack(ys).astype(np.float32)


def _dataset(crops: _Crops, steps: int):
    import keras

    class CropDataset(keras.utils.PyDataset):
        def __len__(self) -> int:
            return steps

        def __getitem__(self, idx: int):
            return crops()

    return CropDataset()


# ---------------------------------------------------------------- loss
def make_loss(outputs: int):
    """The loss of the training view (:func:`logits_view`), on *logits* ``z`` (the head before its sigmoid).
    Reference net: binary cross-entropy (the paper's). ``unet2``: BCE + soft Dice on the foreground
    (sparse small objects: Dice does not let the background dominate) + BCE on the centre map.

    BCE is computed from logits (``max(z, 0) - z y + log(1 + exp(-|z|))``), whose gradient ``sigmoid(z) - y``
    never vanishes. The former loss clipped probabilities to [1e-6, 1 - 1e-6]: once a head saturated (all
    background, as on the sparse demo slide after a few dozen steps) the clip zeroed every gradient and the
    net stayed empty for good."""
    from keras import ops

    def loss(y_true, z):
        bce = ops.maximum(z, 0) - z * y_true + ops.log1p(ops.exp(-ops.abs(z)))
        if outputs == 1:
            return ops.mean(bce)
        t0, p0 = y_true[..., 0], ops.sigmoid(z[..., 0])
        dice = 1 - (2 * ops.sum(t0 * p0) + 1) / (ops.sum(t0) + ops.sum(p0) + 1)
        return ops.mean(bce[..., 0]) + dice + ops.mean(bce[..., 1])

    return loss


def init_head_prior(net, train: list[_Prepared]) -> np.ndarray:
    """Set the untrained sigmoid head's bias to the logit of each target channel's mean over the training
    images (clipped to [1e-4, 0.5]), so that the net starts by predicting that rare foreground is rare
    (the prior initialisation of the focal-loss paper, Lin et al. 2017). Measured on the demo slide (1.3 %
    foreground, 128-px crops of 8, constant learning rate, seed 0): validation pixel F1 0.83 after 25 steps
    with it; with the default zero bias 0.0 after 25 steps, then 0.83 / 0.67 / 0.54 / 0.86 / 0.89 every 25
    steps (and none predicted at all in one 4 x 25-step cosine-schedule run). Returns the biases set."""
    k = net.layers[-1].get_weights()
    n = sum(p.y[..., 0].size for p in train)
    means = np.array([sum(float(p.y[..., c].sum()) for p in train) / max(n, 1) for c in range(k[1].shape[0])])
    prior = np.clip(means, 1e-4, 0.5)
    bias = np.log(prior / (1 - prior)).astype(np.float32)
    net.layers[-1].set_weights([k[0], bias])
    return bias


def logits_view(net):
    """A Keras model sharing every weight of ``net`` (a U-Net whose last layer is a 1x1 sigmoid ``Conv2D``)
    whose output is that head's pre-activation (logits): training fits this view with :func:`make_loss`,
    so ``net`` itself (saved, stitched, exported) keeps its probability output and its layer names."""
    import keras
    from keras import ops

    head = net.layers[-1]
    if not isinstance(head, keras.layers.Conv2D) or tuple(head.kernel_size) != (1, 1):
        raise ValueError(f"the network's last layer is {type(head).__name__}, not a 1x1 Conv2D head")

    class HeadLogits(keras.layers.Layer):
        def __init__(self, conv):
            super().__init__(name="head_logits")
            self.conv = conv  # tracked: its kernel and bias are this view's trainable weights too

        def call(self, x):
            k = self.conv.kernel
            return ops.matmul(x, ops.reshape(k, (k.shape[2], k.shape[3]))) + self.conv.bias

    return keras.Model(net.input, HeadLogits(head)(head.input), name=f"{net.name}_logits")  # one input, as net


# ---------------------------------------------------------------- validation and calibration
def _predict_images(network, images: list[np.ndarray], tta: bool = False) -> list[np.ndarray]:
    from fosgate.core.predict import predict_single_pass

    out = []
    for x in images:
        m = predict_single_pass(network, x, tta=tta)
        out.append(m if m.ndim == 3 else m[..., None])
    return out


def object_f1_of(maps: list[np.ndarray], truths: list[np.ndarray], post) -> dict[str, float]:
    """Pooled object scores (IoU >= 0.5, one-to-one) of the instances ``post`` makes from ``maps``."""
    from fosgate.core.model import encode_core, instances_from_encoded

    per = [object_scores(instances_from_encoded(encode_core(m, post.threshold), post), t, 0.5, None)
           for m, t in zip(maps, truths, strict=True)]
    return summarize_objects(per)


def _areas(truths: list[np.ndarray]) -> np.ndarray:
    areas = np.concatenate([np.bincount(t.ravel())[1:] for t in truths if t.max() > 0] or [np.array([], np.int64)])
    return areas[areas > 0]


def _median_area(truths: list[np.ndarray]) -> float:
    areas = _areas(truths)
    return float(np.median(areas)) if areas.size else 40.0


def min_size_cap(truths: list[np.ndarray]) -> int | None:
    """The largest min size calibration may choose: the 5th-percentile area of the objects in *all*
    labelled images (training and validation), so that it never erases more than 5 % of the objects the
    labels show; None when they have no object. A min size is chosen on the validation images alone;
    uncapped, validation images of large objects pick one that erases every small object the other labels
    show. Measured on DSB2018 (10 images, two large-nucleus validation images, the same maps): min size
    250 px test AP@0.5 0.39, 100 px 0.63, 55 px (the cap) 0.70, 15 px 0.68 (threshold 0.5, seed level 0.1;
    the uncapped calibration's 391 px with its own threshold and seed level: 0.28). Half the 5th
    percentile was too strict on c-FOS inns1: it excluded the 42 px that the validation image chose
    (object F1 on the test image 0.72 instead of 0.85)."""
    areas = _areas(truths)
    return max(1, int(np.percentile(areas, 5))) if areas.size else None


def _capped(sizes, cap: int | None) -> list[int]:
    return sorted({min(s, cap) if cap else s for s in sizes})


def epoch_postprocesses(post, arch: str, truths: list[np.ndarray], size_cap: int | None = None) -> list:
    """The few post-processings whose best object F1 is the per-epoch validation score: ``post`` and, for
    ``unet2``, seed levels 0.7 and 0.9 and the distance-transform split, each also with a min size of a
    quarter of the median true object (at most ``size_cap``, :func:`min_size_cap`).
    (One fixed post-processing ranks epochs by how well they suit *it*: measured on c-FOS wue1, object F1
    at the default seed level fell 0.46 -> 0.24 over epochs while pixel F1 rose 0.67 -> 0.73, so the
    under-trained epoch 3 was kept. The model's post-processing is calibrated on the full grid afterwards.)"""
    sizes = _capped({post.min_size_px, max(post.min_size_px, int(round(0.25 * _median_area(truths))))}, size_cap)
    seeds = [post.seed_threshold] + ([0.7, 0.9] if arch != "reference" else [])
    posts = [replace(post, seed_threshold=s, min_size_px=m) for s in dict.fromkeys(seeds) for m in sizes]
    if arch != "reference":  # the distance-transform split, which calibration may choose instead of seeds
        posts += [replace(post, split_touching=True, min_size_px=m) for m in sizes]
    return posts


def calibrate_postprocess(maps: list[np.ndarray], truths: list[np.ndarray], post, *, arch: str,
                          rounds: int = 2, size_cap: int | None = None, prefix: str = "val",
                          tie_maps: list[np.ndarray] | None = None, tie_truths: list[np.ndarray] | None = None
                          ) -> tuple[object, dict[str, float]]:
    """Coordinate search over the foreground threshold, the split rule (the distance-transform watershed of
    the foreground, or for ``unet2`` the centre-seeded one), the seed level (``unet2``) and the min size (at
    most ``size_cap``, see :func:`min_size_cap`), maximising pooled object F1 on the validation images (as
    StarDist's ``optimize_thresholds``). Returns (PostProcess, scores named ``{prefix}_...``; ``train`` for
    an in-sample calibration).

    Ties on the validation images go to the higher pooled object F1 on ``tie_maps``/``tie_truths`` (the
    training images, in-sample), then to the current value: a few easy validation objects score F1 1.0
    under most post-processings and cannot choose among them. The training images never override a
    validation difference. Measured on DSB2018, 5 training images (one validation image of 11 nuclei, F1
    1.0 with the default seeds): test AP@0.5 0.513 with ties kept, 0.716 with the training tie-break (the
    distance split chosen; 0.699 with a fixed distance split at 0.5 / 15 px).

    ``unet2`` may choose the distance-transform split: on DSB2018 (unseen magnifications, large textured
    nuclei) its centre map stays low inside nuclei and its seeds under-split (same 10-image model and test
    maps, threshold 0.5, min size 15 px: pooled AP@0.5 0.77 with the distance split vs 0.67 with the best
    seed level); c-FOS, same weights recalibrated, held-out object F1: inns1_1108 0.824 both, mue_1051
    0.657 -> 0.663, wue1 groups 0+4 0.582 -> 0.668.

    Seed levels start at 0.1: a centre map is under-confident where the net is unsure (measured on
    DSB2018, nuclei of mixed sizes, 500 steps: test AP@0.5 0.68 with seeds at 0.1 or 0.2, 0.62 at 0.3,
    0.35 at 0.5)."""
    med = _median_area(truths)
    sizes = _capped({1, 5, 10, 20, *(max(1, int(round(q * med))) for q in (0.1, 0.25, 0.5))}, size_cap)
    grid: dict[str, list] = {"threshold": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], "min_size_px": sizes}
    grid["split_touching"] = [False, True]
    if arch != "reference":
        grid["seed_threshold"] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    tie_scores: dict = {}

    def tie_f1(p) -> float:  # computed only when the validation images tie
        if p not in tie_scores:
            tie_scores[p] = object_f1_of(tie_maps, tie_truths, p)["object_f1"] if tie_maps else 0.0
        return tie_scores[p]

    best = object_f1_of(maps, truths, post)
    default_f1 = best["object_f1"]
    for _ in range(rounds):
        changed = False
        for name, values in grid.items():
            for v in values:
                if v == getattr(post, name):
                    continue
                cand = replace(post, **{name: v})
                s = object_f1_of(maps, truths, cand)
                better = s["object_f1"] > best["object_f1"] + 1e-9 or (
                    abs(s["object_f1"] - best["object_f1"]) <= 1e-9 and tie_f1(cand) > tie_f1(post) + 1e-9)
                if better:
                    post, best, changed = cand, s, True
        if not changed:
            break
    return post, {**{f"{prefix}_{k}": float(v) for k, v in best.items()},
                  f"{prefix}_object_f1_default_post": default_f1}


def in_sample_calibration_set(prepared: list[_Prepared], max_px: int = 4_000_000) -> list[_Prepared]:
    """The training images a model without held-out validation is calibrated on: the first ones, up to
    ``max_px`` pixels (at least one). In-sample calibration is the fallback for a set too small to hold an
    image out (e.g. one small image); ``metrics['calibrated_in_sample']`` says it was used and its scores
    are stored as ``train_*``, never as validation scores."""
    chosen, px = [], 0
    for p in prepared:
        if chosen and px + p.inst.size > max_px:
            break
        chosen.append(p)
        px += p.inst.size
    return chosen


def calibrate_threshold(prob: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """The probability threshold with the best pixel F1 pooled over validation pixels. Ties go to the value
    nearest 0.5; without any foreground in prediction or truth the default 0.5 is kept. (Kept for pixel-
    level uses; models calibrate on object F1 with :func:`calibrate_postprocess`.)"""
    t = np.asarray(truth, bool)
    n_true = int(np.count_nonzero(t))
    best = (-1.0, DEFAULT_THRESHOLD)
    for thr in CANDIDATE_THRESHOLDS:
        p = prob >= thr
        denom = int(np.count_nonzero(p)) + n_true
        if denom == 0:
            continue
        f1 = 2 * int(np.count_nonzero(p & t)) / denom
        if f1 > best[0] + 1e-12 or (abs(f1 - best[0]) <= 1e-12 and abs(thr - 0.5) < abs(best[1] - 0.5)):
            best = (f1, thr)
    if best[0] <= 0:
        return {"threshold": DEFAULT_THRESHOLD}
    return {"threshold": float(best[1]), "val_pixel_f1_pooled_at_threshold": float(best[0])}


def _bce(prob: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(prob, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


SELECTION_KEY = "val_selection"


def epoch_selection_score(object_f1: float, val_loss: float) -> float:
    """The score early stopping (patience) watches: the validation object F1 while any epoch finds a cell
    (F1 > 0), else minus the validation loss, which is <= 0 and so below every epoch that finds cells.
    With no validation images ``object_f1`` is already minus the training loss (< 0)."""
    if object_f1 > 0 or not math.isfinite(val_loss):
        return float(object_f1)
    return -float(val_loss)


def epoch_selection_key(object_f1: float, val_loss: float) -> tuple[float, float]:
    """The key whose maximum is the kept epoch (the ``KeepBest`` callback of ``_callbacks``), compared
    in float64: ``(epoch_selection_score, -val_loss)``. So F1 decides; equal F1, including 0 everywhere,
    goes to the epoch whose maps fit the validation pixels best, never by default to the first (least
    trained) one. Measured: with F1 0 everywhere epoch 1 was kept, whose maps calibration cannot rescue;
    with F1 saturated, on DSB2018 (5 training images, 500 steps) the one validation image scored object
    F1 1.0 from epoch 1 on, epoch 1 was kept and the test AP@0.5 was 0.342 (that training's epoch 20, kept
    with this key: 0.513; 0.699 on its maps with a fixed distance split). Keras' ``EarlyStopping``
    compares in float32, where a loss tie-break added to F1 is lost, so the best weights are kept by this
    key instead."""
    loss = float(val_loss) if math.isfinite(val_loss) else math.inf
    return epoch_selection_score(object_f1, val_loss), -loss


def _callbacks(model, val: list[_Prepared], config: TrainConfig, steps: int, history: dict,
               on_epoch: Callable[[EpochReport], None] | None, should_cancel: Callable[[], bool] | None,
               size_cap: int | None = None, start_candidate: bool = False):
    """``(callbacks, keep)``: progress / cancel, the best-epoch keeper ``keep`` and early stopping. With
    ``start_candidate`` (and validation images) ``keep`` first scores the starting weights as epoch 0
    (``keep.start_scores``); ``keep.best_epoch`` is then -1 when no epoch beat them."""
    import keras

    xs = [p.x for p in val]
    truths = [p.inst for p in val]
    posts = epoch_postprocesses(model.post, model.arch, truths, size_cap)

    def val_scores() -> tuple[float, float, dict[str, float]]:
        """(object F1 under the best of ``posts``, BCE, pixel scores) of the current weights on ``val``."""
        maps = _predict_images(model.network, xs)  # probabilities (the fitted view gives logits)
        obj = max(object_f1_of(maps, truths, post)["object_f1"] for post in posts)
        fg = [m[..., 0] for m in maps]
        val_loss = float(np.mean([_bce(f, (t > 0).astype(np.float32)) for f, t in zip(fg, truths, strict=True)]))
        return obj, val_loss, mean_pixel_scores(zip((f >= 0.5 for f in fg), (t > 0 for t in truths), strict=True))

    class Progress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_train_batch_begin(self, batch, logs=None):
            if should_cancel and should_cancel():
                raise Cancelled("Training cancelled.")

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            loss = float(logs.get("loss", float("nan")))
            if val:
                obj, val_loss, pix = val_scores()
            else:  # no validation: the training loss decides
                obj, val_loss, pix = -loss, loss, {"pixel_f1": float("nan"), "pixel_miou": float("nan")}
            logs["val_object_f1"] = obj
            logs[SELECTION_KEY] = epoch_selection_score(obj, val_loss)
            lr = self.model.optimizer.learning_rate
            for k, v in (("loss", loss), ("val_loss", val_loss), ("object_f1", obj if val else float("nan")),
                         ("pixel_f1", pix["pixel_f1"]), ("pixel_miou", pix["pixel_miou"]),
                         ("learning_rate", float(np.asarray(lr)))):
                history.setdefault(k, []).append(float(v))
            if on_epoch:
                on_epoch(EpochReport(epoch + 1, config.epochs, loss, val_loss, pix["pixel_f1"], pix["pixel_miou"],
                                     time.perf_counter() - self.t0, obj if val else float("nan")))

    class KeepBest(keras.callbacks.Callback):
        """The weights of the epoch with the largest :func:`epoch_selection_key`, restored at the end."""

        def __init__(self):
            super().__init__()
            self.best_key, self.best_epoch, self.best_weights = None, -1, None
            self.start_scores: dict[str, float] | None = None

        def on_train_begin(self, logs=None):
            if start_candidate:  # the start competes as epoch 0 (best_epoch -1)
                obj, val_loss, pix = val_scores()
                self.start_scores = {"object_f1": obj, "val_loss": val_loss, **pix}
                self.best_key, self.best_weights = epoch_selection_key(obj, val_loss), self.model.get_weights()

        def on_epoch_end(self, epoch, logs=None):  # after Progress, which wrote this epoch's scores
            key = epoch_selection_key(logs["val_object_f1"], history["val_loss"][-1])
            if self.best_key is None or key > self.best_key:
                self.best_key, self.best_epoch, self.best_weights = key, epoch, self.model.get_weights()

        def on_train_end(self, logs=None):
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    keep = KeepBest()
    callbacks = [Progress(), keep]
    if config.weight_average:  # the epoch's scores and the kept weights are the average's
        average = WeightAverage(config.weight_average)
        callbacks = [average, *callbacks, average.restore]
    if config.patience:  # stops after `patience` epochs without a better score (float32: ties do not count)
        callbacks.append(keras.callbacks.EarlyStopping(monitor=SELECTION_KEY, mode="max",
                                                       patience=config.patience, restore_best_weights=False,
                                                       verbose=0))
    return callbacks, keep


def _weight_average_class():
    import keras

    class WeightAverage(keras.callbacks.Callback):
        """Exponential moving average of every weight (batch-norm statistics included), updated after each
        training batch with momentum ``min(momentum, (1 + t) / (10 + t))`` at step t (so early steps are
        not dominated by the initial weights). At an epoch's end it swaps the average in, before the
        scoring and keeping callbacks; ``restore`` (a callback listed after them) swaps the raw weights back
        so training continues from them. The weights kept as best are therefore an average's."""

        def __init__(self, momentum: float):
            super().__init__()
            self.momentum, self.step, self.average, self.raw = momentum, 0, None, None
            outer = self

            class Restore(keras.callbacks.Callback):
                def on_epoch_end(self, epoch, logs=None):
                    if outer.raw is not None:
                        outer.model.set_weights(outer.raw)
                        outer.raw = None

            self.restore = Restore()

        def on_train_begin(self, logs=None):
            self.average = [np.array(w, copy=True) for w in self.model.get_weights()]

        def on_train_batch_end(self, batch, logs=None):
            m = min(self.momentum, (1 + self.step) / (10 + self.step))
            self.step += 1
            for avg, w in zip(self.average, self.model.get_weights(), strict=True):
                if np.issubdtype(avg.dtype, np.floating):
                    avg *= m
                    avg += (1 - m) * w
                else:  # counters and the like follow the raw weights
                    avg[...] = w

        def on_epoch_end(self, epoch, logs=None):
            self.raw = self.model.get_weights()
            self.model.set_weights(self.average)

    return WeightAverage


def WeightAverage(momentum: float):  # noqa: N802 (a Keras callback class, built when Keras is imported)
    """A :class:`keras.callbacks.Callback` averaging the weights (see ``_weight_average_class``)."""
    return _weight_average_class()(momentum)


FREEZABLE = {"": (), "encoder": ("down", "bottom")}


def frozen_layers(net, freeze: str) -> list:
    """The layers of ``net`` that ``TrainConfig.freeze`` keeps fixed (those whose name starts with one of
    ``FREEZABLE[freeze]``)."""
    prefixes = FREEZABLE[freeze]
    return [layer for layer in net.layers if prefixes and layer.name.startswith(prefixes)]


def default_steps(train_px: int, config: TrainConfig) -> int:
    """About two passes over the labelled pixels per epoch, 25..400 steps."""
    return int(np.clip(math.ceil(2 * train_px / config.tile_size ** 2 / config.batch_size), 25, 400))


def train_model(
    pairs: list[TrainingPair],
    config: TrainConfig = TrainConfig(),
    *,
    normalization: Normalization | None = None,
    base=None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    **provenance,
):
    """Train a new ``FosgateModel`` of ``config.arch`` (or fine-tune ``base``, a ``FosgateModel``, whose
    architecture and normalisation are kept) and return it with ``metrics``, ``post`` (calibrated) and
    ``history`` set. ``provenance``: ``model_id``, ``name``, ... (fields of ``FosgateModel``)."""
    import keras

    from fosgate import __version__
    from fosgate.core.model import FosgateModel, PostProcess
    from fosgate.core.unet import ARCHS, check_arch

    if not pairs:
        raise InvalidInput("No labelled images to train on.")
    if config.freeze not in FREEZABLE:
        raise InvalidInput(f"Unknown layer group to freeze '{config.freeze}'; use one of "
                           f"{', '.join(repr(k) for k in FREEZABLE)}.")
    if config.freeze and base is None:
        raise InvalidInput("Freezing layers needs a base model to fine-tune (trained or pretrained).")
    if not 0.0 <= config.weight_average < 1.0:
        raise InvalidInput(f"The weight-averaging momentum must be at least 0 and below 1, not {config.weight_average}.")
    if not 1 <= config.members <= MAX_MEMBERS:
        raise InvalidInput(f"An ensemble has 1 to {MAX_MEMBERS} networks, not {config.members}.")
    if base is not None and ensemble_size(base.network) > 1:
        raise InvalidInput("The base model is an ensemble of several networks; fine-tuning starts from a single "
                           "network (train the ensemble again with the new labels instead).")
    if config.members > 1:
        members = train_members(pairs, config, normalization=normalization, base=base, on_epoch=on_epoch,
                                should_cancel=should_cancel)
        return ensemble_of(members, pairs, config, **provenance)
    tile = config.tile_size
    if tile % 16 or tile < 16:
        raise InvalidInput(f"The training tile size must be a multiple of 16, not {tile}.")
    channels = {(p.image.shape[-1] if p.image.ndim == 3 else 1) for p in pairs}
    if len(channels) != 1:
        raise InvalidInput("The training images mix grey and colour; use one kind of image per model.")
    in_channels = channels.pop()
    if base is not None:
        arch, normalization = base.arch, base.normalization
        if base.in_channels != in_channels:
            raise InvalidInput(f"The base model expects {base.in_channels} channel(s) but the images have "
                               f"{in_channels}.")
    else:
        try:
            arch = check_arch(config.arch)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        normalization = normalization or Normalization()
    known = [p.pixel_size_um for p in pairs if p.pixel_size_um and p.pixel_size_um > 0]
    model_px = (base.pixel_size_um if base is not None and base.pixel_size_um else
                config.pixel_size_um or (float(np.median(known)) if known else 0.0))
    outputs = ARCHS[arch]
    prepared = [_prepare(p, normalization, tile, outputs, model_px) for p in pairs]
    train, val = split_pairs(prepared, config.val_fraction, tile, _split_seed(config))
    real_val = bool(val) and val is not prepared  # images held out (else validation is the training set)
    size_cap = min_size_cap([p.inst for p in prepared])  # from every label, not the validation images alone
    if base is not None:
        model = base
    else:
        model = FosgateModel.create(arch, in_channels, normalization, seed=config.seed, pixel_size_um=model_px)
    model.post = PostProcess(min_size_px=10)
    if base is None or base.is_pretrained_only:  # the head was never trained
        init_head_prior(model.network, train)
    train_px = sum(p.inst.size for p in train)
    steps = config.steps_per_epoch or default_steps(train_px, config)
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=config.epochs * steps,
                                                      alpha=0.05)
    net = model.network
    frozen = frozen_layers(net, config.freeze)
    for layer in frozen:
        layer.trainable = False
    try:  # the saved model never keeps a layer frozen
        view = logits_view(net)
        view.compile(optimizer=keras.optimizers.Adam(schedule), loss=make_loss(outputs))
        history: dict[str, list[float]] = {}
        start_candidate = config.keep_start and real_val and base is not None and not base.is_pretrained_only
        callbacks, keep = _callbacks(model, val, config, steps, history, on_epoch, should_cancel, size_cap,
                                     start_candidate=start_candidate)
        t_start = time.perf_counter()
        view.fit(_dataset(_Crops(train, config, normalization.clip_max), steps), epochs=config.epochs,
                steps_per_epoch=steps, callbacks=callbacks, verbose=0)
    finally:
        for layer in frozen:
            layer.trainable = True
    if should_cancel and should_cancel():
        raise Cancelled("Training cancelled.")
    epochs_run = len(history.get("loss", []))
    best_epoch = (int(keep.best_epoch) + 1) if keep.best_weights is not None else epochs_run
    metrics: dict[str, float] = {"best_epoch": float(best_epoch)}  # 0: the base's own weights were kept
    for k in ("val_loss", "object_f1", "pixel_f1", "pixel_miou"):
        if history.get(k) and val:  # without validation these are the training loss or NaN: not stored
            at = keep.start_scores if best_epoch == 0 else {k: history[k][best_epoch - 1]}
            metrics[k if k != "object_f1" else "val_object_f1_at_best_epoch"] = at[k]
    if keep.start_scores is not None:
        metrics["val_object_f1_at_start"] = keep.start_scores["object_f1"]
    if config.calibrate:  # choose the post-processing on the validation images (else on the training images)
        model.post, scores = _calibrate(model, prepared, train, val, real_val, size_cap)
        metrics.update(scores)
    metrics.update(threshold=model.post.threshold, seed_threshold=model.post.seed_threshold,
                   min_size_px=float(model.post.min_size_px), split_touching=float(model.post.split_touching),
                   epochs_run=float(epochs_run), train_seconds=time.perf_counter() - t_start,
                   train_images=float(len(train)), val_images=float(len(val)), steps_per_epoch=float(steps),
                   val_is_train=float(val is prepared),
                   val_band_split=float(len(prepared) >= 2 and len(val) == len(prepared)),
                   calibrated=float(config.calibrate),
                   calibrated_in_sample=float(config.calibrate and not real_val),
                   frozen_layers=float(len(frozen)),
                   tile_size=float(tile))
    model.metrics = metrics
    model.history = history
    model.train_tile_size = tile
    model.fosgate_version = __version__
    for k, v in provenance.items():
        setattr(model, k, v)
    return model


def _calibrate(model, prepared: list[_Prepared], train: list[_Prepared], val: list[_Prepared], real_val: bool,
               size_cap: int | None) -> tuple:
    """``(post, scores)``: ``model``'s post-processing chosen on the validation images (else on the
    training images), validation ties broken on the training images (:func:`calibrate_postprocess`)."""
    cal = val if real_val else in_sample_calibration_set(prepared)
    maps = _predict_images(model.network, [p.x for p in cal])
    tie = in_sample_calibration_set(train) if real_val and train else []  # breaks validation ties
    tie_maps = _predict_images(model.network, [p.x for p in tie]) if tie else None
    return calibrate_postprocess(maps, [p.inst for p in cal], model.post, arch=model.arch, size_cap=size_cap,
                                 prefix="val" if real_val else "train", tie_maps=tie_maps,
                                 tie_truths=[p.inst for p in tie] or None)


def _split_seed(config: TrainConfig) -> int:
    return config.seed if config.split_seed is None else config.split_seed


def split_of(model, pairs: list[TrainingPair], config: TrainConfig) -> tuple[list, list, list]:
    """``(prepared, train, val)``: ``pairs`` prepared with ``model``'s normalisation, outputs and pixel size
    and split by ``config``'s tile, validation fraction and split seed -- the very split
    :func:`train_model` made when it trained ``model`` on ``pairs`` with ``config`` (``val is prepared``:
    no image could be held out)."""
    prepared = [_prepare(p, model.normalization, config.tile_size, len(model.outputs), model.pixel_size_um)
                for p in pairs]
    train, val = split_pairs(prepared, config.val_fraction, config.tile_size, _split_seed(config))
    return prepared, train, val


def member_config(config: TrainConfig, i: int) -> TrainConfig:
    """The config of member ``i`` of ``config``'s ensemble: one network, seed ``seed + i * stride``, the
    ensemble's split."""
    return replace(config, members=1, seed=config.seed + i * MEMBER_SEED_STRIDE, split_seed=_split_seed(config))


def train_members(pairs: list[TrainingPair], config: TrainConfig, *, normalization: Normalization | None = None,
                  base=None, on_epoch: Callable[[EpochReport], None] | None = None,
                  should_cancel: Callable[[], bool] | None = None) -> list:
    """The ``config.members`` networks of a seed ensemble, each a complete ``FosgateModel`` trained (and
    calibrated) alone by :func:`train_model` with :func:`member_config`; fine-tuning starts every member
    from a copy of ``base`` (``base`` is left as it is). Progress counts the members' epochs in turn."""
    out = []
    for i in range(config.members):
        start = None if base is None else replace(base, network=_copy_network(base.network))
        progress = None if on_epoch is None else (
            lambda r, i=i: on_epoch(replace(r, epoch=i * r.epochs + r.epoch, epochs=config.members * r.epochs)))
        out.append(train_model(pairs, member_config(config, i), normalization=normalization, base=start,
                               on_epoch=progress, should_cancel=should_cancel))
    return out


def ensemble_of(members: list, pairs: list[TrainingPair], config: TrainConfig, **provenance):
    """One ``FosgateModel`` averaging ``members`` (trained by :func:`train_members` on ``pairs`` with
    ``config``): the first member's architecture, normalisation, pixel size and receptive field; its
    post-processing calibrated on the members' shared validation images (``config``'s split) from the
    averaged maps; metrics: the ensemble's calibration scores, ``members`` and each member's own
    validation object F1 and best epoch; ``history`` is the first member's curve. The members' weights are
    shared, not copied."""
    from fosgate import __version__
    from fosgate.core.model import PostProcess

    first = members[0]
    prepared, train, val = split_of(first, pairs, config)
    real_val = bool(val) and val is not prepared
    model = replace(first, network=average_network([m.network for m in members]), post=PostProcess(min_size_px=10),
                    history=dict(first.history))
    metrics = {k: v for k, v in first.metrics.items() if k.startswith(("train_images", "val_images", "val_is",
                                                                        "val_band", "steps_per", "tile_size",
                                                                        "epochs_run", "frozen"))}
    metrics["members"] = float(len(members))
    metrics["train_seconds"] = float(sum(m.metrics.get("train_seconds", 0.0) for m in members))
    for i, m in enumerate(members):
        for k in ("best_epoch", "val_object_f1"):
            if k in m.metrics:
                metrics[f"member{i}_{k}"] = m.metrics[k]
    if config.calibrate:
        model.post, scores = _calibrate(model, prepared, train, val, real_val, min_size_cap([p.inst for p in prepared]))
        metrics.update(scores)
    metrics.update(threshold=model.post.threshold, seed_threshold=model.post.seed_threshold,
                   min_size_px=float(model.post.min_size_px), split_touching=float(model.post.split_touching),
                   calibrated=float(config.calibrate), calibrated_in_sample=float(config.calibrate and not real_val))
    model.metrics = metrics
    model.fosgate_version = __version__
    for k, v in provenance.items():
        setattr(model, k, v)
    return model


def _copy_network(net):
    """A new Keras network of ``net``'s architecture with a copy of its weights."""
    import keras

    copy = keras.models.clone_model(net)
    copy.set_weights(net.get_weights())
    return copy


def train_unet(pairs: list[TrainingPair], normalization: Normalization, config: TrainConfig, *, model=None,
               on_epoch: Callable[[EpochReport], None] | None = None,
               should_cancel: Callable[[], bool] | None = None):
    """The former interface: train the reference U-Net (``config.arch`` is ignored) and return
    ``(keras model, metrics, history)``; ``model`` (a Keras reference net) is fine-tuned if given."""
    from fosgate.core.model import FosgateModel
    from fosgate.core.unet import receptive_field_radius

    base = None
    if model is not None:
        base = FosgateModel(model, "reference", int(model.input_shape[-1]), normalization,
                            int(receptive_field_radius(model)))
    fm = train_model(pairs, replace(config, arch="reference"), normalization=normalization, base=base,
                     on_epoch=on_epoch, should_cancel=should_cancel)
    return fm.network, dict(fm.metrics), fm.history


def plot_training_curve(history: dict[str, list[float]], path: Path) -> Path:
    """The convergence curve: training/validation loss and validation object/pixel F1 per epoch (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history.get("loss", [])) + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(epochs, history.get("loss", []), label="training loss")
    a.plot(epochs, history.get("val_loss", []), label="validation BCE (foreground)")
    a.set_xlabel("epoch")
    a.set_ylabel("loss")
    a.legend()
    if any(np.isfinite(history.get("object_f1", [float("nan")]))):
        b.plot(epochs, history["object_f1"], label="object F1 (IoU >= 0.5)")
    b.plot(epochs, history.get("pixel_f1", []), label="pixel F1")
    b.plot(epochs, history.get("pixel_miou", []), label="pixel MIoU")
    b.set_xlabel("epoch")
    b.set_ylim(0, 1)
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
