"""Training the reference U-Net on labelled images (whole images or labelled rectangles of slides).

Invariants
- Inputs are normalised with each pair's slide statistics (``lo``/``hi``) and the model's
  :class:`~fosgate.core.normalize.Normalization`, exactly as prediction does.
- Targets: any non-zero mask pixel is foreground; for instance-label masks, pixels where two
  different instances touch are set to background so the network learns to separate touching cells.
- Validation is held out before training: whole images when there are at least two pairs, else
  the bottom ``val_fraction`` of the single image. Validation metrics (reference-paper pixel MIoU
  and F1, mean over validation tiles) are computed on a fixed grid of tiles, every epoch.
- The returned model carries the weights of the epoch with the lowest validation loss; training
  stops early after ``patience`` epochs without improvement (0 = never).
- Deterministic for a given seed (up to TensorFlow's CPU kernels).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fosgate.core.metrics import mean_pixel_scores
from fosgate.core.normalize import Normalization
from fosgate.core.tiling import plan_crop_tiles
from fosgate.errors import Cancelled, InvalidInput


@dataclass
class TrainingPair:
    image: np.ndarray  # (h, w, C) raw uint8/uint16
    mask: np.ndarray  # (h, w) binary or instance labels
    name: str = ""
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None


@dataclass
class TrainConfig:
    epochs: int = 20
    tile_size: int = 128
    batch_size: int = 16
    val_fraction: float = 0.2
    seed: int = 0
    learning_rate: float = 1e-3
    steps_per_epoch: int | None = None
    patience: int = 0
    foreground_bias: float = 0.5  # fraction of crops centred near a foreground pixel


@dataclass
class EpochReport:
    epoch: int
    epochs: int
    loss: float
    val_loss: float
    pixel_f1: float
    pixel_miou: float
    seconds: float = 0.0


@dataclass
class _Prepared:
    x: np.ndarray  # (h, w, C) float32 normalised, at least tile x tile
    y: np.ndarray  # (h, w) float32 0/1
    fg: np.ndarray = field(default_factory=lambda: np.empty((0, 2), np.int64))  # foreground pixel coords


def training_target(mask: np.ndarray) -> np.ndarray:
    """0/1 target from a binary or instance-label mask (touching instances separated by a 1-px gap)."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m.max(axis=-1)
    fg = m > 0
    values = np.unique(m[fg])
    if values.size > 1:
        border = np.zeros_like(fg)
        for dy, dx in ((0, 1), (1, 0)):
            a = m[: m.shape[0] - dy, : m.shape[1] - dx]
            b = m[dy:, dx:]
            touch = (a > 0) & (b > 0) & (a != b)
            border[: m.shape[0] - dy, : m.shape[1] - dx] |= touch
            border[dy:, dx:] |= touch
        fg &= ~border
    return fg.astype(np.float32)


def _prepare(pair: TrainingPair, normalization: Normalization, tile: int) -> _Prepared:
    image = pair.image if pair.image.ndim == 3 else pair.image[..., None]
    if image.shape[:2] != np.asarray(pair.mask).shape[:2]:
        raise InvalidInput(f"Image and mask of '{pair.name}' differ in size: {image.shape[1]}x{image.shape[0]} "
                           f"vs {pair.mask.shape[1]}x{pair.mask.shape[0]}.")
    if pair.lo is None or pair.hi is None:
        lo, hi = normalization.stats_of_array(image)
    else:
        lo, hi = pair.lo, pair.hi
    x = Normalization.apply(image, lo, hi, normalization.clip_max)
    y = training_target(pair.mask)
    h, w = y.shape
    if h < tile or w < tile:
        ph, pw = max(0, tile - h), max(0, tile - w)
        x = np.pad(x, ((0, ph), (0, pw), (0, 0)))
        y = np.pad(y, ((0, ph), (0, pw)))
    return _Prepared(x, y, np.argwhere(y > 0))


def split_pairs(prepared: list[_Prepared], val_fraction: float, tile: int, seed: int
                ) -> tuple[list[_Prepared], list[_Prepared]]:
    """Hold out whole images (>= 2 pairs) or the bottom rows of a single image."""
    if val_fraction <= 0:
        return prepared, []
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
    top = _Prepared(p.x[: h - n_val], p.y[: h - n_val], np.argwhere(p.y[: h - n_val] > 0))
    bottom = _Prepared(p.x[h - n_val:], p.y[h - n_val:], np.argwhere(p.y[h - n_val:] > 0))
    return [top], [bottom]


def _val_tiles(val: list[_Prepared], tile: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for p in val:
        h, w = p.y.shape
        for t in plan_crop_tiles(h, w, tile, 0):
            xs.append(p.x[t.y:t.y + tile, t.x:t.x + tile])
            ys.append(p.y[t.y:t.y + tile, t.x:t.x + tile])
    return np.stack(xs), np.stack(ys)


class _Sampler:
    """Random crops (some centred near foreground) with flips and 90-degree rotations."""

    def __init__(self, train: list[_Prepared], tile: int, batch: int, fg_bias: float, seed: int):
        self.train, self.tile, self.batch, self.fg_bias = train, tile, batch, fg_bias
        self.rng = np.random.default_rng(seed)
        areas = np.array([p.y.size for p in train], np.float64)
        self.weights = areas / areas.sum()

    def __call__(self) -> tuple[np.ndarray, np.ndarray]:
        t = self.tile
        c = self.train[0].x.shape[-1]
        xb = np.empty((self.batch, t, t, c), np.float32)
        yb = np.empty((self.batch, t, t, 1), np.float32)
        for i in range(self.batch):
            p = self.train[self.rng.choice(len(self.train), p=self.weights)]
            h, w = p.y.shape
            if len(p.fg) and self.rng.random() < self.fg_bias:
                cy, cx = p.fg[self.rng.integers(len(p.fg))]
                y0 = int(np.clip(cy - self.rng.integers(t), 0, h - t))
                x0 = int(np.clip(cx - self.rng.integers(t), 0, w - t))
            else:
                y0, x0 = int(self.rng.integers(h - t + 1)), int(self.rng.integers(w - t + 1))
            x = p.x[y0:y0 + t, x0:x0 + t]
            y = p.y[y0:y0 + t, x0:x0 + t]
            k = int(self.rng.integers(4))
            x, y = np.rot90(x, k), np.rot90(y, k)
            if self.rng.random() < 0.5:
                x, y = x[:, ::-1], y[:, ::-1]
            xb[i], yb[i, ..., 0] = x, y
        return xb, yb


DEFAULT_THRESHOLD = 0.5
CANDIDATE_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 .. 0.95


def calibrate_threshold(prob: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """The probability threshold with the best pixel F1 pooled over validation pixels (as StarDist
    optimises its thresholds on validation data). Sparse labels (a few cells per tile, e.g. light-sheet
    c-Fos) leave a BCE-trained net under-confident, and 0.5 then misses most cells. Ties go to the value
    nearest 0.5; without any foreground in prediction or truth the default 0.5 is kept."""
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


def train_unet(
    pairs: list[TrainingPair],
    normalization: Normalization,
    config: TrainConfig,
    *,
    model=None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
):
    """Train (or fine-tune ``model``) and return ``(model, metrics, history)``."""
    from fosgate.core.unet import build_unet, compile_unet

    if not pairs:
        raise InvalidInput("No labelled images to train on.")
    tile = config.tile_size
    if tile % 16 or tile < 16:
        raise InvalidInput(f"The training tile size must be a multiple of 16, not {tile}.")
    channels = {(p.image.shape[-1] if p.image.ndim == 3 else 1) for p in pairs}
    if len(channels) != 1:
        raise InvalidInput("The training images mix grey and colour; use one kind of image per model.")
    in_channels = channels.pop()
    prepared = [_prepare(p, normalization, tile) for p in pairs]
    train, val = split_pairs(prepared, config.val_fraction, tile, config.seed)
    if model is None:
        model = build_unet(in_channels, seed=config.seed)
    elif int(model.input_shape[-1]) != in_channels:
        raise InvalidInput(f"The base model expects {model.input_shape[-1]} channel(s) but the images have "
                           f"{in_channels}.")
    compile_unet(model, config.learning_rate)
    sampler = _Sampler(train, tile, config.batch_size, config.foreground_bias, config.seed)
    train_px = sum(p.y.size for p in train)
    # about one pass over the labelled pixels per epoch, but never fewer than 25 steps: small label sets
    # (a few dozen reviewed tiles) otherwise get too few gradient steps to learn anything
    steps = config.steps_per_epoch or int(np.clip(math.ceil(train_px / tile**2 / config.batch_size), 25, 400))
    vx, vy = _val_tiles(val, tile) if val else (None, None)
    history: dict[str, list[float]] = {"loss": [], "val_loss": [], "pixel_f1": [], "pixel_miou": []}
    best = (math.inf, None, {})
    since_best = 0
    t_start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        losses = []
        for _ in range(steps):
            if should_cancel and should_cancel():
                raise Cancelled("Training cancelled.")
            xb, yb = sampler()
            losses.append(float(np.asarray(model.train_on_batch(xb, yb)).ravel()[0]))
        loss = float(np.mean(losses))
        if vx is not None:
            probs = np.concatenate([np.asarray(model(vx[i:i + 32], training=False))[..., 0]
                                    for i in range(0, len(vx), 32)])
            val_loss = _bce(probs, vy)
            scores = mean_pixel_scores(zip(probs >= 0.5, vy > 0, strict=True))
        else:
            val_loss, scores = loss, {"pixel_f1": float("nan"), "pixel_miou": float("nan")}
        for k, v in (("loss", loss), ("val_loss", val_loss), ("pixel_f1", scores["pixel_f1"]),
                     ("pixel_miou", scores["pixel_miou"])):
            history[k].append(v)
        report = EpochReport(epoch, config.epochs, loss, val_loss, scores["pixel_f1"], scores["pixel_miou"],
                             time.perf_counter() - t0)
        if on_epoch:
            on_epoch(report)
        if val_loss < best[0]:
            best = (val_loss, model.get_weights(), {"val_loss": val_loss, **scores, "best_epoch": epoch})
            since_best = 0
        else:
            since_best += 1
            if config.patience and since_best >= config.patience:
                break
    if best[1] is not None:
        model.set_weights(best[1])
    metrics = dict(best[2])
    metrics["threshold"] = DEFAULT_THRESHOLD
    if vx is not None and val is not prepared:  # a real validation split: calibrate the threshold on it
        probs = np.concatenate([np.asarray(model.predict_on_batch(vx[i:i + 32]))[..., 0]
                                for i in range(0, len(vx), 32)])
        metrics.update(calibrate_threshold(probs, vy > 0.5))
    metrics.update(epochs_run=len(history["loss"]), train_seconds=time.perf_counter() - t_start,
                   train_images=len(train), val_images=len(val), steps_per_epoch=steps,
                   val_is_train=float(val is prepared))
    return model, metrics, history


def plot_training_curve(history: dict[str, list[float]], path: Path) -> Path:
    """Loss and validation metrics per epoch as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history["loss"]) + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(epochs, history["loss"], label="training loss")
    a.plot(epochs, history["val_loss"], label="validation loss")
    a.set_xlabel("epoch")
    a.set_ylabel("binary cross-entropy")
    a.legend()
    b.plot(epochs, history["pixel_f1"], label="pixel F1")
    b.plot(epochs, history["pixel_miou"], label="pixel MIoU")
    b.set_xlabel("epoch")
    b.set_ylim(0, 1)
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
