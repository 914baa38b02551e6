"""Real data through the CLI: train on FNC yellow + red (../shared/data/fnc), predict a held-out image.

Slow (several minutes on 2 cores). Prints the validation pixel F1/MIoU and the object F1 of the
prediction so that CI logs carry the numbers (FNC: CC BY-SA 4.0, Morelli et al. 2021; Clissa et al. 2024).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import shared_data


@pytest.mark.slow
def test_train_on_fnc_and_predict_held_out_image(server, tmp_path):
    from fosgate.core.metrics import object_scores, pixel_scores

    fnc = shared_data("fnc")
    address = f"127.0.0.1:{server.port}"
    # hold one yellow image out of training entirely
    held = sorted((fnc / "yellow" / "images").glob("*.png"))[0]
    train_images = tmp_path / "yellow_images"
    train_masks = tmp_path / "yellow_masks"
    train_images.mkdir()
    train_masks.mkdir()
    for img in sorted((fnc / "yellow" / "images").glob("*.png")):
        if img != held:  # symlinks: nothing is copied
            (train_images / img.name).symlink_to(img)
            (train_masks / img.name).symlink_to(fnc / "yellow" / "masks" / img.name)
    cmd = [sys.executable, "-m", "fosgate.cli", "train", "--server", address,
           "--images", str(train_images), "--masks", str(train_masks),
           "--images", str(fnc / "red" / "images"), "--masks", str(fnc / "red" / "masks"),
           "--epochs", "4", "--steps-per-epoch", "20", "--tile-size", "128", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    model_id = lines[-1]
    info = json.loads(lines[-2])
    assert info["model_id"] == model_id
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "fosgate.cli", "predict", "--server", address, "--model", model_id, str(held),
           "--out", str(out), "--min-size", "100"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import tifffile

    pred = tifffile.imread(out / f"{held.stem}.labels.ome.tif")
    truth = np.asarray(Image.open(fnc / "yellow" / "masks" / held.name).convert("L"))
    px = pixel_scores(pred > 0, truth > 0)
    obj = object_scores(pred, truth, iou_threshold=0.5, centroid_px=40)
    print(f"\nFNC: validation pixel F1 {info['metrics']['pixel_f1']:.3f} MIoU {info['metrics']['pixel_miou']:.3f}; "
          f"held-out {held.name}: pixel F1 {px['f1']:.3f} IoU {px['iou']:.3f}, object F1 {obj['f1']:.3f} "
          f"({obj['n_pred']} predicted / {obj['n_true']} true)")
    # a trained model must beat the untrained network by far (reference paper: untrained F1 0.02)
    assert px["f1"] > 0.4 and obj["f1"] > 0.4
