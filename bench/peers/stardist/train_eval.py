"""StarDist 2D from scratch on one fold of bench/bench_cfos.py, within a wall-clock budget.

Run by bench/peers/stardist/.venv (TensorFlow 2.15 / Keras 2, stardist, csbdeep; see setup.sh), never by
fosgate's environment:

    bench/peers/stardist/.venv/bin/python bench/peers/stardist/train_eval.py FOLD.json

FOLD.json (written by bench_cfos.py): ``images`` {name: {image, mask, px_per_um}}, ``train`` and
``test`` (names), ``seed``, ``budget_s`` (training seconds allowed), ``px_per_um`` (the model's pixel
size: images are rescaled to it, as for fosgate), ``val_fraction``, ``out_dir``, ``quick``.

Recipe (StarDist's 2D example notebook, from scratch; nothing downloaded): grey input normalised to its
1-99.8 percentiles, instance targets = 4-connected components of the consensus (holes filled), 32 rays,
grid (2, 2), 256-px patches (128 if an image is smaller), batch 4, flips / 90-degree rotations and
intensity jitter as augmentation; validation on ``val_fraction`` of the training images (at least one
whole image when there are two or more); training stops when ``budget_s`` has passed (checked after
every step); the probability / NMS thresholds are then optimised on the validation images
(``optimize_thresholds``, IoU 0.5), timed separately. Test images are predicted at the model's pixel
size and the labels brought back to the image's own size (nearest neighbour).

Writes ``out_dir/result.json``: per test image the path of its ``.npy`` labels and StarDist's own
``matching`` against the consensus components (a cross-check of fosgate's metric), and timings.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.transform import resize


def _read(path: str) -> np.ndarray:
    a = np.asarray(Image.open(path))
    return a.max(axis=-1) if a.ndim == 3 else a


def _scaled(img: np.ndarray, factor: float, order: int) -> np.ndarray:
    if abs(factor - 1) < 1e-9:
        return img
    shape = (max(1, round(img.shape[0] * factor)), max(1, round(img.shape[1] * factor)))
    out = resize(img, shape, order=order, preserve_range=True, anti_aliasing=order > 0 and factor < 1)
    return out.astype(img.dtype) if order == 0 else out.astype(np.float32)


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    out_dir = Path(spec["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    import tensorflow as tf
    from csbdeep.utils import normalize
    from stardist import fill_label_holes
    from stardist.matching import matching
    from stardist.models import Config2D, StarDist2D

    four = ndimage.generate_binary_structure(2, 1)
    seed = int(spec["seed"])
    np.random.seed(seed)
    tf.random.set_seed(seed)
    target = float(spec["px_per_um"])

    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        info = spec["images"][name]
        f = target / float(info["px_per_um"])
        x = normalize(_scaled(_read(info["image"]).astype(np.float32), f, 1), 1, 99.8, axis=(0, 1))
        y = ndimage.label(_scaled((_read(info["mask"]) > 0).astype(np.uint8), f, 0) > 0, structure=four)[0]
        return x.astype(np.float32), fill_label_holes(y)

    names = list(spec["train"])
    rng = np.random.default_rng(seed)
    order = [names[i] for i in rng.permutation(len(names))]
    n_val = min(len(names) - 1, max(1, round(len(names) * float(spec["val_fraction"])))) if len(names) > 1 else 0
    val_names, train_names = order[:n_val], order[n_val:]
    xs, ys = zip(*(load(n) for n in train_names), strict=True)
    if val_names:
        xv, yv = zip(*(load(n) for n in val_names), strict=True)
    else:  # one training image: validate on it (stated in the result)
        xv, yv = xs, ys
    smallest = min(min(x.shape) for x in list(xs) + list(xv))
    patch = 256 if smallest >= 256 else 128

    def augment(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = np.random.randint(4)
        x, y = np.rot90(x, k), np.rot90(y, k)
        if np.random.rand() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        x = x * np.random.uniform(0.6, 2.0) + np.random.uniform(-0.2, 0.2)
        return np.ascontiguousarray(x), np.ascontiguousarray(y)

    conf = Config2D(n_rays=32, grid=(2, 2), n_channel_in=1, train_patch_size=(patch, patch), train_batch_size=4,
                    use_gpu=False)
    model = StarDist2D(conf, name=f"fold_s{seed}", basedir=str(out_dir / "model"))
    budget = float(spec["budget_s"])

    class Budget(tf.keras.callbacks.Callback):
        """Stop once the wall-clock budget has passed (checked after every batch)."""

        def __init__(self) -> None:
            super().__init__()
            self.t0 = time.perf_counter()
            self.steps = 0

        def on_train_batch_end(self, batch, logs=None) -> None:
            self.steps += 1
            if time.perf_counter() - self.t0 >= budget:
                self.model.stop_training = True

    model.prepare_for_training()
    stop = Budget()
    model.callbacks.append(stop)
    t0 = time.perf_counter()
    steps_per_epoch = 5 if spec.get("quick") else 25
    history = model.train(list(xs), list(ys), validation_data=(list(xv), list(yv)), augmenter=augment,
                          epochs=100_000, steps_per_epoch=steps_per_epoch, seed=seed)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    model.optimize_thresholds(list(xv), list(yv), nms_threshs=[0.3, 0.5], iou_threshs=[0.5],
                              predict_kwargs={"show_tile_progress": False}, optimize_kwargs={"tol": 1e-2})
    thresholds_s = time.perf_counter() - t1
    preds = {}
    t2 = time.perf_counter()
    for name in spec["test"]:
        info = spec["images"][name]
        raw = _read(info["image"])
        x, _ = load(name)
        lab, _ = model.predict_instances(x, show_tile_progress=False)
        lab = _scaled(lab.astype(np.int32), raw.shape[0] / lab.shape[0], 0) if lab.shape != raw.shape else lab
        if lab.shape != raw.shape:  # rounding: fix the size exactly
            lab = resize(lab, raw.shape, order=0, preserve_range=True, anti_aliasing=False).astype(np.int32)
        path = out_dir / f"{name}.labels.npy"
        np.save(path, lab.astype(np.int32))
        truth = ndimage.label(_read(info["mask"]) > 0, structure=four)[0]
        m = matching(truth, lab, thresh=0.5, criterion="iou")
        preds[name] = {"labels": str(path), "stardist_matching": {"tp": int(m.tp), "fp": int(m.fp), "fn": int(m.fn)},
                       "n_pred": int(lab.max() and len(np.unique(lab)) - 1)}
    result = {"train_seconds": train_s, "steps": stop.steps, "epochs_run": len(history.history.get("loss", [])),
              "thresholds_seconds": thresholds_s, "predict_seconds": time.perf_counter() - t2,
              "thresholds": {"prob": float(model.thresholds.prob), "nms": float(model.thresholds.nms)},
              "patch": patch, "train_images": len(train_names), "val_images": len(val_names),
              "val_is_train": not val_names, "final_loss": float(history.history["loss"][-1]),
              "predictions": preds}
    (out_dir / "result.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
