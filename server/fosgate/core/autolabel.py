"""Label proposals for tiles: classical labeller, a trained model, Segment Anything (``core.sam``).

Every proposer returns uint32 instance labels of the tile's size (0 = background); proposals are
only suggestions until a person accepts, rejects or edits them (see ``App.review_proposal``).

Model proposals are predicted with the model's full halo of context read from the slide around the
tile, so a proposal equals the corresponding crop of a whole-slide prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from fosgate.core.classical import classical_labels
from fosgate.core.instances import label_mask
from fosgate.core.normalize import Normalization
from fosgate.core.predict import predict_tiled
from fosgate.core.tiling import CropTile, round_up
from fosgate.core.unet import required_halo

Rect = tuple[int, int, int, int]  # x, y, width, height in slide pixels


def classical_proposal(slide, rect: Rect, **kw) -> np.ndarray:
    x, y, w, h = rect
    return classical_labels(slide.read(y, y + h, x, x + w), **kw)


class ModelProposer:
    """Predictions of one model on tiles of one slide (normalised with the slide's statistics)."""

    def __init__(self, model, meta, slide, threshold: float | None = None, min_size: int = 10):
        self.model, self.meta, self.slide = model, meta, slide
        self.norm = Normalization.from_json(meta.normalization)
        self.lo, self.hi = self.norm.stats(slide)
        self.halo = required_halo(meta.receptive_field)
        self.threshold = meta.threshold if threshold is None else threshold
        self.min_size = min_size

    def probability(self, rect: Rect) -> np.ndarray:
        """Probabilities of ``rect`` with full context (equal to a whole-slide prediction's crop)."""
        x, y, w, h = rect
        info = self.slide.info
        # a window aligned to the 16-px pooling grid of the slide, holding rect plus the halo
        x0, y0 = max(0, (x - self.halo) // 16 * 16), max(0, (y - self.halo) // 16 * 16)
        x1, y1 = min(info.width, x + w + self.halo), min(info.height, y + h + self.halo)
        prob = np.zeros((y1 - y0, x1 - x0), np.float32)

        def read(a0, a1, b0, b1):
            raw = self.slide.read(y0 + a0, y0 + a1, x0 + b0, x0 + b1)
            return Normalization.apply(raw, self.lo, self.hi, self.norm.clip_max)

        def on_block(cy0, cy1, cx0, cx1, p):
            prob[cy0:cy1, cx0:cx1] = p

        tile = round_up(max(y1 - y0, x1 - x0), 16)
        predict_tiled(self.model, read, y1 - y0, x1 - x0, tile=tile, halo=0, on_block=on_block)
        return prob[y - y0:y - y0 + h, x - x0:x - x0 + w]

    def __call__(self, rect: Rect) -> tuple[np.ndarray, float]:
        """(instance labels, uncertainty) for one tile; uncertainty = mean of 4 p (1 - p)."""
        p = self.probability(rect)
        labels = np.zeros(p.shape, np.uint32)
        label_mask(p >= self.threshold, labels, min_size=self.min_size)
        return labels, float(np.mean(4 * p * (1 - p)))


def tile_uncertainty(model, meta, slide, tiles: Sequence[CropTile], tile_size: int = 0,
                     should_cancel: Callable[[], bool] | None = None) -> np.ndarray:
    """Mean ``4 p (1 - p)`` over each crop tile's core, from one seam-free pass over the slide
    (crop-tile cores partition the image, so every pixel counts once)."""
    from fosgate.core.predict import auto_tile

    norm = Normalization.from_json(meta.normalization)
    lo, hi = norm.stats(slide)
    info = slide.info
    halo = required_halo(meta.receptive_field)
    tile = tile_size or auto_tile(info.height, info.width, info.channels, memory_budget_bytes=1.0e9, halo=halo)
    sums = np.zeros(len(tiles))
    areas = np.zeros(len(tiles))
    cores = np.array([(t.core_y, t.core_y + t.core_height, t.core_x, t.core_x + t.core_width) for t in tiles])

    def read(y0, y1, x0, x1):
        return Normalization.apply(slide.read(y0, y1, x0, x1), lo, hi, norm.clip_max)

    def on_block(cy0, cy1, cx0, cx1, p):
        u = 4 * p * (1 - p)
        hit = np.nonzero((cores[:, 0] < cy1) & (cores[:, 1] > cy0) & (cores[:, 2] < cx1) & (cores[:, 3] > cx0))[0]
        for i in hit:
            a0, a1 = max(cores[i, 0], cy0), min(cores[i, 1], cy1)
            b0, b1 = max(cores[i, 2], cx0), min(cores[i, 3], cx1)
            sums[i] += u[a0 - cy0:a1 - cy0, b0 - cx0:b1 - cx0].sum()
            areas[i] += (a1 - a0) * (b1 - b0)

    predict_tiled(model, read, info.height, info.width, tile=tile, halo=halo, on_block=on_block,
                  should_cancel=should_cancel)
    return sums / np.maximum(areas, 1)
