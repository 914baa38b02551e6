"""StarDist's own matching (``stardist.matching.matching``) of mask pairs, as a cross-check of fosgate's.

Run by bench/peers/stardist/.venv (stardist's legacy stack), not by fosgate's environment:

    bench/peers/stardist/.venv/bin/python bench/peers/stardist/check_matching.py pairs.json out.json

``pairs.json``: a list of ``{"key": str, "pred": path, "truth": path}`` (PNG masks, binary or RGB);
both are turned into 4-connected components, as fosgate does. ``out.json``: ``{key: {tp, fp, fn}}`` at
IoU >= 0.5, and the stardist version.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import stardist
from PIL import Image
from scipy import ndimage
from stardist.matching import matching


def components(path: str) -> np.ndarray:
    m = np.asarray(Image.open(path))
    m = m.max(axis=-1) if m.ndim == 3 else m
    return ndimage.label(m > 0, structure=ndimage.generate_binary_structure(2, 1))[0]


def main() -> int:
    with open(sys.argv[1]) as fh:
        pairs = json.load(fh)
    out = {"stardist": stardist.__version__, "pairs": {}}
    for p in pairs:
        s = matching(components(p["truth"]), components(p["pred"]), thresh=0.5, criterion="iou")
        out["pairs"][p["key"]] = {"tp": int(s.tp), "fp": int(s.fp), "fn": int(s.fn)}
    with open(sys.argv[2], "w") as fh:
        json.dump(out, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
